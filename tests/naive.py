"""Slow, readable twins of the numba kernels; the tests check that both agree exactly.

They follow the equations in ``spikeviz/engine/kernels.py`` step by step, one neuron-layer at a
time with NumPy, and do the float32 arithmetic in the same order so the spikes match one for one.
"""

import math

import numpy as np

F32 = np.float32


def poisson_events(image, duration_ms, rng, rate_hz=5000.0, permutation=None):
    """Twin of ``spikeviz.encode`` (``_alias_table`` and ``_poisson_kernel``): the same alias
    table, built the same way, and the same draws from ``rng``, in the same order."""
    pixels = np.asarray(image, dtype=np.float64).reshape(-1)
    if permutation is None:
        permutation = np.arange(pixels.size)
    # Alias table over the lit pixels: column c is lit pixel lit[c].
    lit = [p for p in range(pixels.size) if pixels[p] > 0.0]
    total = 0.0
    for p in lit:  # a running total, as the kernel adds them (not np.sum's pairwise sum)
        total += pixels[p]
    n_columns = len(lit)
    scaled = [pixels[p] * (n_columns / total) for p in lit]  # probability * column count
    cutoff = [1.0] * n_columns
    alias = list(range(n_columns))
    small = [c for c in range(n_columns) if scaled[c] < 1.0]
    large = [c for c in range(n_columns) if scaled[c] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        cutoff[s], alias[s] = scaled[s], g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    # Draws: the count, n + 1 exponential spacings, then one uniform per event.
    n = rng.poisson(rate_hz * duration_ms / 1000.0)
    spacings = [rng.standard_exponential() for _ in range(n + 1)]
    uniforms = [rng.random() for _ in range(n)]
    running = np.cumsum(spacings)  # a running total, as the kernel adds them
    times = running[:n] * (duration_ms / running[-1])
    channels = []
    for u in uniforms:
        x = u * n_columns
        column = min(int(x), n_columns - 1)
        pixel = lit[column] if x - column < cutoff[column] else lit[alias[column]]
        channels.append(permutation[pixel])
    return times, np.array(channels, dtype=np.int32)


class NaiveLayer:
    def __init__(self, weights, thresholds, floor, scale=None, keep=None):
        self.w = np.array(weights, dtype=F32)  # (M, N) stored, copied: the twin has its own network
        self.th = np.array(thresholds, dtype=F32)  # what the forward pass reads
        self.exact = self.th.astype(np.float64)  # what training changes (kernels.move_threshold)
        self.floor = F32(floor)
        n = self.th.size
        self.scale = np.ones(n, F32) if scale is None else np.array(scale, dtype=F32)
        self.keep = np.ones(n, bool) if keep is None else np.array(keep, dtype=bool)  # dropout
        self.boost = np.zeros(n, F32)  # weight increase owed by threshold regularization
        self.v = np.zeros(n, F32)
        self.last_spike = np.full(n, -np.inf)
        self.trace = np.zeros(n, F32)
        self.counts = np.zeros(n, np.int32)
        self.clock = 0.0


def _add_spike(trace, last, counts, i, t, tau):
    trace[i] = F32(float(trace[i]) * math.exp((last[i] - t) / tau) + 1.0)
    last[i] = t
    counts[i] += 1


def simulate(weights, thresholds, floors, times, channels, end_ms, kappas, dyn, watch=(),
             scales=None, detail=None, keeps=None):
    """Run one sample; return per-layer results, the input traces and every spike and potential.

    ``dyn`` is a ``kernels.Dynamics``; ``watch`` lists (layer, neuron) pairs; ``scales`` the
    per-neuron weight scale of each layer (real weight = stored weight * scale), 1 if None.
    ``detail``, a dict, receives the twin of the engine's detailed recording: ``rows``, one
    dict per potential row with the fields of ``kernels.Detail``, and ``spike_event``.
    ``keeps`` says per layer which neurons take part (dropout: the others receive nothing).
    """
    scales = scales or [None] * len(weights)
    keeps = keeps or [None] * len(weights)
    layers = [NaiveLayer(*args) for args in zip(weights, thresholds, floors, scales, keeps)]
    n_inputs = layers[0].w.shape[0]
    x_trace = np.zeros(n_inputs, F32)
    x_last = np.full(n_inputs, -np.inf)
    x_counts = np.zeros(n_inputs, np.int32)
    spikes, potentials = [], []
    detail = {} if detail is None else detail
    detail.update(rows=[], spike_event=[])
    for e, (t, k) in enumerate(zip(times, channels)):
        _add_spike(x_trace, x_last, x_counts, k, t, dyn.tau_mp_ms)
        sources = [k]
        for index, layer in enumerate(layers):
            fired = []
            for source in sources:
                before, clock = layer.v.copy(), layer.clock
                winners = _receive(layer, index, source, t, kappas[index], dyn, spikes)
                detail["spike_event"] += [e] * len(winners)
                fired += winners
                for w_index, (watch_layer, neuron) in enumerate(watch):
                    if watch_layer == index:
                        potentials.append((t, w_index, layer.peak[neuron], layer.v[neuron]))
                        detail["rows"].append(_detail_row(layer, neuron, e, source, t, before,
                                                          clock, winners))
            if not fired:
                break
            sources = fired
    for layer in layers:
        layer.trace = _trace_at(layer.trace, layer.last_spike, end_ms, dyn.tau_mp_ms)
        layer.w += layer.boost  # the owed weight increases, once at the end of the sample
    x_trace = _trace_at(x_trace, x_last, end_ms, dyn.tau_mp_ms)
    return layers, (x_trace, x_counts), spikes, potentials


def _detail_row(layer, neuron, event, source, t, before, clock, winners):
    """What one event did to a watched neuron, step by step (the engine's ``Detail`` row)."""
    fired = neuron in winners
    return dict(
        event=event, source=source, dt_ms=t - clock, before=before[neuron],
        decayed=layer.decayed[neuron], jump=layer.jump[neuron], gain=layer.gain[neuron],
        reset=layer.after_reset[neuron] if fired else np.nan,
        rank=winners.index(neuron) if fired else -1, winners=len(winners),
        threshold=layer.th[neuron],
    )


def _trace_at(trace, last, end_ms, tau):
    out = trace.copy()
    for i in np.flatnonzero(trace):
        out[i] = F32(float(trace[i]) * math.exp((last[i] - end_ms) / tau))
    return out


def _gain(layer, t, dyn):
    """Weight scale times the refractory dynamic weight (1) of every neuron at time t."""
    gain = np.where(layer.keep, layer.scale, F32(0))  # a neuron dropout silences gets nothing
    if dyn.t_ref_ms > 0:
        for i in np.flatnonzero(layer.keep):
            dt = t - layer.last_spike[i]
            if dt < dyn.t_ref_ms:
                gain[i] = layer.scale[i] * F32(min(1.0, dyn.w_dyn0 + (dt / dyn.t_ref_ms) ** 2))
    return gain


def _receive(layer, index, source, t, kappa, dyn, spikes):
    """One event into one layer; returns the neurons that fired, in firing order."""
    decay = F32(math.exp((layer.clock - t) / dyn.tau_mp_ms))
    layer.clock = t
    layer.gain = _gain(layer, t, dyn)
    layer.decayed = layer.v * decay  # decay (1)
    layer.jump = layer.w[source] * layer.gain  # input (1)
    layer.v = np.maximum(layer.decayed + layer.jump, -layer.th)  # clip at -Vth
    layer.after_reset = {}
    layer.peak = layer.v.copy()
    ratio = layer.v / layer.th
    candidates = sorted(np.flatnonzero(layer.v >= layer.th), key=lambda i: (-ratio[i], i))
    fired = []
    for i in candidates:
        if layer.v[i] < layer.th[i]:  # inhibited by an earlier winner
            continue
        # reset (2), clipped to [-Vth, Vth]
        layer.v[i] = min(max(layer.v[i] - F32(dyn.gamma) * layer.th[i], -layer.th[i]), layer.th[i])
        layer.after_reset[i] = layer.v[i]
        if kappa != 0:  # WTA (4)
            others = np.arange(layer.th.size) != i
            inhibited = layer.v + F32(kappa) * layer.th
            layer.v[others] = np.maximum(inhibited, -layer.th)[others]
        _add_spike(layer.trace, layer.last_spike, layer.counts, i, t, dyn.tau_mp_ms)
        spikes.append((t, index, i))
        fired.append(i)
    if dyn.rho > 0 and fired:
        _regularize_thresholds(layer, fired, dyn)
    return fired


def _regularize_thresholds(layer, fired, dyn):
    """Sec. 5.2: fired thresholds rise by rho*N, then all fall by rho*Nw, down to the floor;
    in float64, the forward pass reading them rounded to float32. A fall the floor blocks is
    owed to the neuron's weights (times weight_boost) or, with spread_blocked, first shared
    equally by the thresholds still above the floor."""
    rise, fall = dyn.rho * layer.th.size, dyn.rho * len(fired)
    for j in fired:
        layer.exact[j] += rise
    blocked = _lower(layer, np.full(layer.th.size, fall), dyn.spread_blocked, dyn)
    total = sum(blocked.tolist())  # in order, as the kernel adds them
    free = layer.exact > layer.floor
    if dyn.spread_blocked and total > 0 and free.any():
        _lower(layer, np.where(free, total / free.sum(), 0.0), False, dyn)
    for i in range(layer.th.size):
        layer.v[i] = min(max(layer.v[i], -layer.th[i]), layer.th[i])


def _lower(layer, falls, keep_blocked, dyn):
    """Lower each threshold by its fall, not below the floor; returns the blocked parts, which
    are owed to the weights unless ``keep_blocked``."""
    blocked = np.zeros(layer.th.size)
    for i in range(layer.th.size):
        lowered = layer.exact[i] - falls[i]
        if lowered < layer.floor:
            blocked[i] = min(falls[i], layer.floor - lowered)
            if not keep_blocked:
                layer.boost[i] += F32(dyn.weight_boost * blocked[i] / float(layer.scale[i]))
            lowered = np.float64(layer.floor)
        layer.exact[i] = lowered
        layer.th[i] = F32(lowered)
    return blocked
