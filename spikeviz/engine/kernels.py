"""Event-driven simulation of layers of leaky integrate-and-fire neurons (Lee et al. 2016, Sec. 3).

The model is written here once; equation numbers are the paper's, decisions are those of
``METHOD.md``.  Time is in milliseconds.  An event reaching layer l at time t_p through input k:

1. decay (1):       V <- V * exp((t_{p-1} - t_p) / tau_mp), t_{p-1} the layer's previous event
                    (all neurons of a layer share tau_mp: one exp per layer per event).
2. input (1):       V_i += w_ki * w_dyn_i, with the refractory dynamic weight
                    w_dyn_i = min(1, w_d0 + (dt / T_ref)^2) while dt = t_p - t_out_i < T_ref, else 1.
3. clip:            V_i >= -Vth_i after every decrease (input, reset, inhibition).
4. fire (2):        neurons with V_i >= Vth_i are candidates; they fire in descending order of
                    V_i / Vth_i (ties: lower index first), at most once each per incoming event.
                    The one firing resets V_i -= gamma * Vth_i and is clipped to [-Vth_i, Vth_i].
5. WTA (4):         in a layer with kappa < 0, a neuron j firing gives every other neuron
                    V_i += kappa * Vth_i (proportional to the inhibited neuron's own threshold), so a
                    later candidate fires only if it is still above threshold.
6. threshold regularization (Sec. 5.2, training only, rho > 0): when Nw of the N neurons fired on
                    this event, each of them raises Vth by rho * N, then all N lower it by rho * Nw;
                    a threshold that would fall below its floor stays at the floor and all weights
                    of that neuron rise by the blocked decrease times ``weight_boost``, summed
                    over the sample and applied at its end (a column of M weights per spike
                    event cost as much as the rest of the sample).  With ``spread_blocked``
                    the sum of the blocked decreases is first taken, in equal shares, from the
                    thresholds still above the floor (the layer's sum of thresholds is kept);
                    only a share that would cross the floor in turn is owed to the weights.
                    V is re-clipped to the new thresholds.
7. traces (3):      x_k(t) = sum_p exp((t_p - t) / tau_mp) over the spikes of input k, a_i(t)
                    likewise over the output spikes of neuron i; kept lazily as the value at the
                    neuron's last spike and brought to the end of the presentation at readout.

A spike of layer l at time t reaches layer l+1 at the same time t, before the next input event
(zero delay), in the order the spikes were emitted.  Every sample starts from rest.

Kernels take named tuples of arrays and plain scalars, mutate the state they are given and hold no
globals, so a setting changed between two samples takes effect at the next one.
"""

import math
from typing import NamedTuple

import numpy as np

from spikeviz._jit import jit


class State(NamedTuple):
    """Parameters and per-sample state of all layers, neurons concatenated in layer order.

    Layer l has the neurons ``neuron_start[l] <= j < neuron_start[l + 1]`` of the per-neuron
    arrays, and its (M_l, N_l) weight matrix, row-major, at ``weights[weight_start[l]:]``: row k is
    the fan-out of its input k.  One flat state (instead of a tuple of layers) keeps the per-event
    work free of struct copies; :class:`spikeviz.engine.Network` hands out per-layer views.
    """

    weights: np.ndarray  # (sum M_l N_l,) float32
    weight_start: np.ndarray  # (L + 1,) int64
    neuron_start: np.ndarray  # (L + 1,) int64
    thresholds: np.ndarray  # (sum N_l,) float32, Vth
    threshold_error: np.ndarray  # (sum N_l,) float64, what float32 could not hold of each Vth
    #                              under training's small steps: Vth = thresholds + error (see
    #                              move_threshold)
    potentials: np.ndarray  # (sum N_l,) float32, V
    gain: np.ndarray  # (sum N_l,) float32, scale * refractory dynamic weight w_dyn
    scale: np.ndarray  # (sum N_l,) float32, real weights = stored weights * scale (1 outside
    #                    training; the weight regularization shrinks it, see train.backprop)
    sum_sq: np.ndarray  # (sum N_l,) float64, sum of the squared stored weights of each neuron
    #                     (np.float64(x), not float(x): numba keeps float(float32) in float32)
    col_sum: np.ndarray  # (sum N_l,) float64, sum of the stored weights of each neuron
    boost: np.ndarray  # (sum N_l,) float32, weight increase owed to each neuron by threshold
    #                    regularization at the floor, applied at the end of the sample
    last_spike_ms: np.ndarray  # (sum N_l,) float64, t_out; -inf before the first spike
    trace: np.ndarray  # (sum N_l,) float32, a_i at last_spike_ms; at the end time after readout
    counts: np.ndarray  # (sum N_l,) int32, output spikes in this sample
    refractory: np.ndarray  # (sum N_l,) int32: per layer, its first n_refractory[l] slots list
    #                         the neurons (layer-local index) with dt < T_ref
    candidates: np.ndarray  # (sum N_l,) int32 scratch
    after_reset: np.ndarray  # (sum N_l,) float32, V of a neuron right after its last reset (2),
    #                          read by the detailed recording
    n_refractory: np.ndarray  # (L,) int64
    clock_ms: np.ndarray  # (L,) float64, time of each layer's previous event
    floor: np.ndarray  # (L,) float32, lower bound of each layer's thresholds (Sec. 5.2)


class Inputs(NamedTuple):
    """Per-sample state of the M input channels of the first layer."""

    last_ms: np.ndarray  # (M,) float64, time of the channel's last event
    trace: np.ndarray  # (M,) float32, x_k at last_ms; at the end time after readout
    counts: np.ndarray  # (M,) int32


class Dynamics(NamedTuple):
    """Scalar settings, read from the config at every sample boundary."""

    tau_mp_ms: float  # membrane time constant
    t_ref_ms: float  # refractory period; 0 disables it
    w_dyn0: float  # dynamic weight right after a spike
    gamma: float  # reset factor
    rho: float  # threshold regularization per spike; 0 outside training
    weight_boost: float  # weight increment per unit of blocked threshold decrease
    spread_blocked: bool  # blocked decreases are taken from the thresholds above the floor


class Recording(NamedTuple):
    """Bounded buffers filled during a sample for the views; capacity 0 records nothing.

    Rows past the capacity are counted in ``seen`` but not stored.
    """

    spike_ms: np.ndarray  # (S,) float64
    spike_layer: np.ndarray  # (S,) int32
    spike_neuron: np.ndarray  # (S,) int32
    watch_layer: np.ndarray  # (K,) int32, the watched neurons ...
    watch_neuron: np.ndarray  # (K,) int32, ... as (layer, neuron) pairs
    watch_peak: np.ndarray  # (K,) float32 scratch
    potential_ms: np.ndarray  # (P,) float64
    potential_watch: np.ndarray  # (P,) int32, index into the watch list
    potential_peak: np.ndarray  # (P,) float32, V after the input, before reset and inhibition
    potential_end: np.ndarray  # (P,) float32, V when the event has been fully processed
    seen: np.ndarray  # (2,) int64: spikes, potential rows
    detail: "Detail"  # the step-by-step account of each potential row; capacity 0 when off


class Detail(NamedTuple):
    """What happened to a watched neuron on one event, step by step (the neuron lab's trace).

    Row r describes potential row r of the :class:`Recording` (same capacity P, or 0 when the
    detail is off: then nothing below is written and the engine runs as fast as without it).
    Step by step: V ``before`` the event, ``decayed`` (1), plus ``jump`` = w_ki * gain (1), clipped
    at -Vth = the recording's peak; then ``reset`` (2) if it fired, WTA inhibition (4) by the other
    ``winners``, clipping; the recording's end value.
    """

    event: np.ndarray  # (P,) int32, index of the input event that caused the row
    source: np.ndarray  # (P,) int32, input of the layer that carried it (channel or neuron)
    dt_ms: np.ndarray  # (P,) float64, time since the layer's previous event (the decay's dt)
    before: np.ndarray  # (P,) float32, V before the decay
    decayed: np.ndarray  # (P,) float32, V after the decay
    jump: np.ndarray  # (P,) float32, w_ki * gain, the input added to the decayed V
    gain: np.ndarray  # (P,) float32, scale * w_dyn at the event (w_dyn outside training)
    reset: np.ndarray  # (P,) float32, V right after the neuron's own reset; NaN if it did not fire
    rank: np.ndarray  # (P,) int32, its place in the layer's firing order on the event, -1: none
    winners: np.ndarray  # (P,) int32, neurons of the layer that fired on the event
    threshold: np.ndarray  # (P,) float32, Vth at the end of the event
    spike_event: np.ndarray  # (S,) int32, input event that caused each stored spike
    before_scratch: np.ndarray  # (K,) float32, V of the watched neurons before the event
    clock_scratch: np.ndarray  # (K,) float64, their layer's previous event time
    now: np.ndarray  # (2,) int64: the input event being processed, the source of the layer


@jit
def reset_state(inputs, state, rec, keep):
    """Bring every neuron to rest and empty the recording: the start of every sample.

    ``keep`` (sum N_l,) float32 is 1 for the neurons that take part in the sample and 0 for
    those dropout silences: their gain is 0, so they receive nothing and never fire.  (Not a
    field of State: one more array there slowed the per-event calls that pass it.)
    """
    inputs.last_ms[:] = -np.inf
    inputs.trace[:] = 0.0
    inputs.counts[:] = 0
    state.potentials[:] = 0.0
    state.gain[:] = state.scale * keep
    state.last_spike_ms[:] = -np.inf
    state.trace[:] = 0.0
    state.counts[:] = 0
    state.n_refractory[:] = 0
    state.clock_ms[:] = 0.0
    state.boost[:] = 0.0
    rec.seen[:] = 0


# Per-event code below takes whole arrays and the layer's first index ``lo`` rather than slices:
# a slice, or an array bound to a new name, costs atomic reference-count updates, and on the
# path every input event takes those cost as much as the integration itself.  The loops over a
# layer's neurons index with unsigned integers (``np.uint64``): a signed index may be negative,
# and the wraparound numba then emits keeps LLVM from vectorizing the loop.


@jit
def _bump_trace(trace, last_ms, counts, i, t_ms, tau_mp_ms):
    """Add one spike at t_ms to the lazily decayed trace (3) of unit i."""
    trace[i] = trace[i] * math.exp((last_ms[i] - t_ms) / tau_mp_ms) + 1.0
    last_ms[i] = t_ms
    counts[i] += 1


@jit
def _traces_at(trace, last_ms, end_ms, tau_mp_ms):
    """Bring every trace from its last spike to the end of the presentation."""
    for i in range(trace.size):
        if trace[i] != 0.0:
            trace[i] = trace[i] * math.exp((last_ms[i] - end_ms) / tau_mp_ms)


@jit
def _refresh_gains(refractory, n_refractory, last_spike_ms, gain, scale, lo, t_ms, t_ref_ms,
                   w_dyn0):
    """Update w_dyn of a layer's refractory neurons; drop those that have recovered.

    The layer's neurons start at ``lo``; its refractory neurons (layer-local indices) are listed
    in ``refractory[lo:lo + n_refractory]``.  Returns the new length of that list.
    """
    n = n_refractory
    j = 0
    while j < n:
        i = lo + refractory[lo + j]
        dt = t_ms - last_spike_ms[i]
        if dt >= t_ref_ms:
            gain[i] = scale[i]
            n -= 1
            refractory[lo + j] = refractory[lo + n]
        else:
            gain[i] = scale[i] * np.float32(min(1.0, w_dyn0 + (dt / t_ref_ms) ** 2))
            j += 1
    return n


@jit(inline="always")
def _integrate(weights, row, potentials, thresholds, gain, lo, hi, decay):
    """Steps 1-3 for the neurons lo <= i < hi, whose input weights start at ``weights[row]``;
    returns whether any crossed threshold.

    One fused loop, so the weights row is read once and the loop vectorizes.
    """
    crossed = False
    for j in range(hi - lo):
        i, w = np.uint64(lo + j), np.uint64(row + j)
        v = potentials[i] * decay + weights[w] * gain[i]
        lowest = -thresholds[i]
        if v < lowest:
            v = lowest
        potentials[i] = v
        crossed |= v >= thresholds[i]
    return crossed


@jit
def _decay(clock_ms, t_ms, tau_mp_ms):
    """The factor (1) by which a layer's potentials decay from its previous event to t_ms."""
    return np.float32(math.exp((clock_ms - t_ms) / tau_mp_ms))


@jit
def _integrate_event(state, layer_index, source, t_ms, dyn):
    """Steps 1-3 of one event reaching a layer through its input ``source``; returns whether a
    neuron reached threshold."""
    lo, hi = state.neuron_start[layer_index], state.neuron_start[layer_index + 1]
    decay = _decay(state.clock_ms[layer_index], t_ms, dyn.tau_mp_ms)
    state.clock_ms[layer_index] = t_ms
    if state.n_refractory[layer_index] > 0:
        state.n_refractory[layer_index] = _refresh_gains(
            state.refractory, state.n_refractory[layer_index], state.last_spike_ms, state.gain,
            state.scale, lo, t_ms, dyn.t_ref_ms, dyn.w_dyn0,
        )
    row = state.weight_start[layer_index] + source * (hi - lo)
    return _integrate(
        state.weights, row, state.potentials, state.thresholds, state.gain, lo, hi, decay
    )


@jit
def _any_at_threshold(potentials, thresholds, start, stop):
    """Whether a neuron start <= i < stop has V >= Vth (no early exit, so the loop vectorizes)."""
    found = False
    for j in range(stop - start):
        i = np.uint64(start + j)
        found |= potentials[i] >= thresholds[i]
    return found


@jit
def _sorted_candidates(potentials, thresholds, lo, hi, candidates):
    """Neurons lo <= i < hi with V >= Vth, in descending V/Vth, ties by lower index, written to
    ``candidates[lo:]``; returns how many.

    Candidates are few: blocks of neurons without one are skipped by a vectorized test, and the
    others insertion sorted.
    """
    v, th, cand = potentials, thresholds, candidates
    n = 0
    for start in range(lo, hi, 64):
        stop = min(start + 64, hi)
        if not _any_at_threshold(v, th, start, stop):
            continue
        for i in range(start, stop):
            if v[i] >= th[i]:
                ratio = v[i] / th[i]
                j = lo + n
                while j > lo and v[cand[j - 1]] / th[cand[j - 1]] < ratio:
                    cand[j] = cand[j - 1]
                    j -= 1
                cand[j] = i
                n += 1
    return n


@jit
def _inhibit_others(potentials, thresholds, lo, hi, winner, kappa):
    """WTA (4): every neuron of the layer but the winner receives kappa * its own threshold,
    then clipping."""
    spared = potentials[winner]
    for j in range(hi - lo):  # no branch on the winner, so the loop vectorizes
        i = np.uint64(lo + j)
        v = potentials[i] + kappa * thresholds[i]
        lowest = -thresholds[i]
        potentials[i] = v if v > lowest else lowest
    potentials[winner] = spared


@jit
def _make_refractory(refractory, n_refractory, layer_index, lo, neuron):
    """List the layer's ``neuron`` (layer-local) as refractory, unless it already is."""
    n = n_refractory[layer_index]
    for j in range(lo, lo + n):
        if refractory[j] == neuron:
            return
    refractory[lo + n] = neuron
    n_refractory[layer_index] = n + 1


@jit(inline="always")  # called per neuron: no call overhead
def move_threshold(thresholds, error, i, amount, floor):
    """Vth_i += amount, not below ``floor``; returns the part of a decrease the floor blocked.

    Thresholds are float32 for the forward pass, but their training steps shrink with the
    decaying rho and learning rates to a few float32 units of a threshold (rho * Nw is 3e-8 at
    epoch 200, a float32 unit at 0.5 is 6e-8); rounding every step then biased them (the fall of
    threshold regularization came out 0% to 196% of its size, depending on the threshold's binary
    exponent), a drift larger than the learning signal late in a run. So the exact value is kept
    as the float32 threshold plus a float64 ``error``, and steps of any size add up.
    """
    exact = np.float64(thresholds[i]) + error[i] + amount
    blocked = 0.0
    if exact < floor:
        blocked = min(-amount, floor - exact)
        exact = np.float64(floor)
    hold_exact(thresholds, error, i, exact)
    return blocked


@jit(inline="always")  # called per neuron: no call overhead
def hold_exact(values, error, i, exact):
    """Store the exact value of entry i (a threshold, a weight scale): its float32 rounding in
    ``values``, and the rest as its float64 ``error``."""
    values[i] = np.float32(exact)
    error[i] = exact - np.float64(values[i])


@jit
def _may_block(thresholds, fall, floor):
    """Whether lowering every threshold by ``fall`` may take one below the floor: a vectorized
    float32 test, its margin wider than a threshold's float64 error (half a float32 unit)."""
    limit = np.float32((np.float64(floor) + fall) * (1.0 + 2.0 ** -20))
    blocked = False
    for i in range(thresholds.size):
        blocked |= thresholds[i] < limit
    return blocked


@jit
def _regularize_thresholds(potentials, thresholds, error, scale, boost, floor, fired, rho,
                           weight_boost, spread_blocked):
    """Threshold regularization (Sec. 5.2) after the neurons ``fired`` fired on one event.

    A decrease blocked at the floor is owed to the neuron's weights in ``boost`` (stored units:
    divided by its scale), or with ``spread_blocked`` first shared out over the thresholds above
    the floor.  Thresholds rarely reach the floor, so the common case is one branch-free,
    vectorized pass.
    """
    th, v = thresholds, potentials
    rise = rho * th.size
    fall = rho * fired.size
    for j in fired:
        move_threshold(th, error, j, rise, -np.inf)
    if not _may_block(th, fall, floor):
        for i in range(th.size):
            hold_exact(th, error, i, np.float64(th[i]) + error[i] - fall)
            v[i] = min(max(v[i], -th[i]), th[i])
        return
    total_blocked = 0.0
    for i in range(th.size):
        blocked = move_threshold(th, error, i, -fall, floor)
        if spread_blocked:
            total_blocked += blocked
        elif blocked > 0.0:
            # The threshold stays at its floor; the weights take the blocked decrease instead.
            boost[i] += np.float32(weight_boost * blocked / scale[i])
    if total_blocked > 0.0:
        _spread(th, error, scale, boost, floor, total_blocked, weight_boost)
    for i in range(th.size):
        v[i] = min(max(v[i], -th[i]), th[i])


@jit
def _spread(thresholds, error, scale, boost, floor, total, weight_boost):
    """Lower every threshold above the floor by an equal share of ``total``, the decreases the
    floor blocked: without it those are lost and the layer's mean threshold ratchets up (the
    winners rise, the losers at the floor cannot fall).  One pass: a share that would cross the
    floor is blocked in turn and owed to the weights like any blocked decrease."""
    n_free = 0
    for i in range(thresholds.size):
        if np.float64(thresholds[i]) + error[i] > floor:
            n_free += 1
    if n_free == 0:
        return
    share = total / n_free
    for i in range(thresholds.size):
        if np.float64(thresholds[i]) + error[i] > floor:
            blocked = move_threshold(thresholds, error, i, -share, floor)
            if blocked > 0.0:
                boost[i] += np.float32(weight_boost * blocked / scale[i])


@jit
def _apply_boosts(state):
    """Raise the weights of every neuron owed a boost (see _regularize_thresholds), with the
    sums of its stored weights following in closed form: sum (w + b)^2 = sum w^2 + 2 b sum w + M b^2
    (with a small weight_boost a few percent of a layer are owed a boost every sample, and
    re-accumulating each raised column's sums in float64 cost 30% of the training speed)."""
    for layer in range(state.neuron_start.size - 1):
        lo, hi = state.neuron_start[layer], state.neuron_start[layer + 1]
        n = hi - lo
        w_lo = state.weight_start[layer]
        m = (state.weight_start[layer + 1] - w_lo) // n
        for i in range(n):
            boost = state.boost[lo + i]
            if boost == 0.0:
                continue
            for k in range(m):
                state.weights[w_lo + k * n + i] += boost
            b = np.float64(boost)
            state.sum_sq[lo + i] += 2.0 * b * state.col_sum[lo + i] + m * b * b
            state.col_sum[lo + i] += m * b
            state.boost[lo + i] = 0.0


@jit
def _regularize_layer(state, layer_index, fired, dyn):
    """Threshold regularization of one layer (training only: slices are fine here)."""
    lo, hi = state.neuron_start[layer_index], state.neuron_start[layer_index + 1]
    _regularize_thresholds(
        state.potentials[lo:hi], state.thresholds[lo:hi], state.threshold_error[lo:hi],
        state.scale[lo:hi], state.boost[lo:hi], state.floor[layer_index], fired, dyn.rho,
        dyn.weight_boost, dyn.spread_blocked,
    )


@jit
def _record_spike(rec, t_ms, layer_index, neuron):
    n = rec.seen[0]
    if n < rec.spike_ms.size:
        rec.spike_ms[n] = t_ms
        rec.spike_layer[n] = layer_index
        rec.spike_neuron[n] = neuron
    if n < rec.detail.spike_event.size:
        rec.detail.spike_event[n] = rec.detail.now[0]
    rec.seen[0] = n + 1


@jit
def _watch_peaks(rec, layer_index, potentials, lo):
    """Remember V of the watched neurons of this layer after the input, before any reset."""
    for w in range(rec.watch_layer.size):
        if rec.watch_layer[w] == layer_index:
            rec.watch_peak[w] = potentials[lo + rec.watch_neuron[w]]


@jit
def _watch_before(rec, state, layer_index, source):
    """Detail: remember V of the watched neurons of this layer and the layer's clock before
    an event from ``source`` decays them."""
    d = rec.detail
    d.now[1] = source
    for w in range(rec.watch_layer.size):
        if rec.watch_layer[w] == layer_index:
            d.before_scratch[w] = state.potentials[state.neuron_start[layer_index]
                                                   + rec.watch_neuron[w]]
            d.clock_scratch[w] = state.clock_ms[layer_index]


@jit
def _input_detail(d, n, w, state, i, row, t_ms, tau_mp_ms):
    """Steps 1-2 into detail row n: the same float32 products as _integrate computes."""
    d.event[n] = d.now[0]
    d.source[n] = d.now[1]
    d.dt_ms[n] = t_ms - d.clock_scratch[w]
    d.before[n] = d.before_scratch[w]
    d.decayed[n] = d.before_scratch[w] * _decay(d.clock_scratch[w], t_ms, tau_mp_ms)
    d.jump[n] = state.weights[row] * state.gain[i]
    d.gain[n] = state.gain[i]


@jit
def _outcome_detail(d, n, state, i, neuron, fired, first, n_fired):
    """Steps 4-6 into detail row n: the neuron's place among the winners and its reset."""
    d.rank[n] = -1
    d.reset[n] = np.nan
    for f in range(first, n_fired):
        if fired[f] == neuron:
            d.rank[n] = f - first
            d.reset[n] = state.after_reset[i]
    d.winners[n] = n_fired - first
    d.threshold[n] = state.thresholds[i]


@jit
def _record_detail(rec, state, layer_index, t_ms, dyn, fired, first, n_fired, after_input):
    """Detail rows of the watched neurons of this layer, at the indices their potential rows
    are about to take (see _record_potentials): steps 1-2 ``after_input`` (before a spike changes
    a gain), steps 4-6 once the event is processed."""
    d = rec.detail
    lo, hi = state.neuron_start[layer_index], state.neuron_start[layer_index + 1]
    row = state.weight_start[layer_index] + d.now[1] * (hi - lo)
    n = rec.seen[1]
    for w in range(rec.watch_layer.size):
        if rec.watch_layer[w] != layer_index:
            continue
        if n < d.event.size:
            neuron = rec.watch_neuron[w]
            if after_input:
                _input_detail(d, n, w, state, lo + neuron, row + neuron, t_ms, dyn.tau_mp_ms)
            else:
                _outcome_detail(d, n, state, lo + neuron, neuron, fired, first, n_fired)
        n += 1


@jit
def _record_potentials(rec, t_ms, layer_index, potentials, lo):
    """One row per watched neuron of this layer: its V at the peak and at the end of the event."""
    for w in range(rec.watch_layer.size):
        if rec.watch_layer[w] != layer_index:
            continue
        n = rec.seen[1]
        if n < rec.potential_ms.size:
            rec.potential_ms[n] = t_ms
            rec.potential_watch[n] = w
            rec.potential_peak[n] = rec.watch_peak[w]
            rec.potential_end[n] = potentials[lo + rec.watch_neuron[w]]
        rec.seen[1] = n + 1


@jit
def _fire(potentials, thresholds, candidates, after_reset, lo, hi, gamma, kappa, fired, n_fired):
    """Steps 4-5 on the layer of neurons lo <= i < hi, with at least one at threshold.

    The neurons that fire (layer-local indices) are appended to ``fired`` after its first
    ``n_fired`` entries (the caller makes room for all the layer's neurons); returns the new
    length.  Each one's V right after its reset goes to ``after_reset`` (for the recording).
    """
    v, th = potentials, thresholds
    for c in range(_sorted_candidates(v, th, lo, hi, candidates)):
        i = candidates[lo + c]
        if v[i] < th[i]:  # inhibited below threshold by an earlier winner
            continue
        v[i] = min(max(v[i] - gamma * th[i], -th[i]), th[i])
        after_reset[i] = v[i]
        if kappa != 0.0:
            _inhibit_others(v, th, lo, hi, i, kappa)
        fired[n_fired] = i - lo
        n_fired += 1
    return n_fired


@jit
def _spiked(trace, last_spike_ms, counts, gain, scale, refractory, n_refractory, layer_index, lo,
            neuron, t_ms, dyn):
    """Trace (3), count and refractoriness of the layer's ``neuron`` that fired at t_ms."""
    i = lo + neuron
    _bump_trace(trace, last_spike_ms, counts, i, t_ms, dyn.tau_mp_ms)
    if dyn.t_ref_ms > 0.0:
        gain[i] = scale[i] * np.float32(min(1.0, dyn.w_dyn0))
        _make_refractory(refractory, n_refractory, layer_index, lo, neuron)


@jit
def _settle(state, layer_index, crossed, t_ms, kappa, dyn, rec, fired, n_fired):
    """After the input of one event to a layer: steps 4-6 if a neuron ``crossed`` threshold, and
    the recording.  Returns the new length of ``fired`` (see _fire)."""
    lo, hi = state.neuron_start[layer_index], state.neuron_start[layer_index + 1]
    watching = rec.watch_layer.size > 0
    detailed = watching and rec.detail.event.size > 0
    if watching:
        _watch_peaks(rec, layer_index, state.potentials, lo)
    if detailed:
        _record_detail(rec, state, layer_index, t_ms, dyn, fired, n_fired, n_fired, True)
    first = n_fired
    if crossed:
        n_fired = _fire(
            state.potentials, state.thresholds, state.candidates, state.after_reset, lo, hi,
            np.float32(dyn.gamma), np.float32(kappa), fired, n_fired,
        )
    for f in range(first, n_fired):
        _spiked(
            state.trace, state.last_spike_ms, state.counts, state.gain, state.scale,
            state.refractory, state.n_refractory, layer_index, lo, fired[f], t_ms, dyn,
        )
        _record_spike(rec, t_ms, layer_index, fired[f])
    if dyn.rho > 0.0 and n_fired > first:
        _regularize_layer(state, layer_index, fired[first:n_fired], dyn)
    if detailed:
        _record_detail(rec, state, layer_index, t_ms, dyn, fired, first, n_fired, False)
    if watching:
        _record_potentials(rec, t_ms, layer_index, state.potentials, lo)
    return n_fired


@jit
def _grow(buffer, needed):
    bigger = np.empty(max(needed, 2 * buffer.size), buffer.dtype)
    bigger[: buffer.size] = buffer
    return bigger


@jit
def run_sample(times_ms, channels, end_ms, inputs, state, kappas, dyn, rec, keep):
    """Simulate one presentation from rest; leaves counts and end-time traces in the state.

    Parameters
    ----------
    times_ms : (E,) float64, sorted event times in [0, end_ms]
    channels : (E,) int32, input channel of each event, in [0, M)
    end_ms : float, length of the presentation; traces are read out at this time
    inputs : Inputs of the first layer
    state : State of all layers
    kappas : (L,) float64, lateral inhibition per layer; 0 = no WTA
    dyn : Dynamics
    rec : Recording
    keep : (sum N_l,) float32, 1 for a neuron taking part, 0 for one dropout silences
    """
    reset_state(inputs, state, rec, keep)
    n_layers = state.clock_ms.size
    widest = np.max(np.diff(state.neuron_start))
    sources = np.empty(4 * widest, np.int32)
    fired = np.empty(4 * widest, np.int32)
    watching = rec.watch_layer.size > 0
    detailed = watching and rec.detail.event.size > 0
    for e in range(times_ms.size):
        t_ms, k = times_ms[e], channels[e]
        if detailed:
            rec.detail.now[0] = e
        _bump_trace(inputs.trace, inputs.last_ms, inputs.counts, k, t_ms, dyn.tau_mp_ms)
        sources[0] = k
        n_sources = 1
        for index in range(n_layers):
            width = state.neuron_start[index + 1] - state.neuron_start[index]
            n_fired = 0
            for s in range(n_sources):
                if n_fired + width > fired.size:
                    fired = _grow(fired, n_fired + width)
                if detailed:
                    _watch_before(rec, state, index, sources[s])
                crossed = _integrate_event(state, index, sources[s], t_ms, dyn)
                if crossed or watching:  # most events end here, in the first layer
                    n_fired = _settle(
                        state, index, crossed, t_ms, kappas[index], dyn, rec, fired, n_fired
                    )
            if n_fired == 0:
                break
            sources, fired = fired, sources
            n_sources = n_fired
    _traces_at(inputs.trace, inputs.last_ms, end_ms, dyn.tau_mp_ms)
    _traces_at(state.trace, state.last_spike_ms, end_ms, dyn.tau_mp_ms)
    if dyn.rho > 0.0:
        _apply_boosts(state)
