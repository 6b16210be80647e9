"""The neuron lab's data: one sample run through the engine with its detailed recording, told
event by event; and one LIF neuron driven by a chosen spike train, beside its analytic rate.

Everything shown comes from the engine (:class:`spikeviz.engine.Simulator` with ``detail=True``):
this module only selects, groups and names what the engine recorded.  The view is
:mod:`spikeviz.viz.lab`.
"""

import math
from dataclasses import dataclass

import numpy as np

from spikeviz.encode import Events, PoissonEncoder
from spikeviz.engine import Network, Simulator, check_kappas
from spikeviz.engine.network import DETAIL_ROWS
from spikeviz.errors import ConfigError
from spikeviz.train.tasks import pixel_permutation

__all__ = [
    "MECHANISMS", "LabTrace", "NeuronMoment", "Step", "analytic_rate_hz", "describe_event",
    "digit_encoder", "drive_events", "encode_digit", "layer_name", "most_active_hidden",
    "next_event", "potential_curve", "rasterize_strokes", "record_sample", "simulated_rates",
    "single_neuron_run", "story",
]


def digit_encoder(config, n_pixels):
    """The encoder that presents images in training under ``config``, as it is now: its input
    rate ``rate_hz`` and, for PI-MNIST, its pixel permutation."""
    return PoissonEncoder(n_pixels, rate_hz=config.rate_hz,
                          permutation=pixel_permutation(config, n_pixels))


def encode_digit(image, duration_ms, seed, encoder=None):
    """The Poisson events of one image, drawn by ``encoder`` (default: 5,000 events/s, pixels
    in order) from the generator of ``seed`` (Sec. 6)."""
    image = np.asarray(image)
    encoder = encoder or PoissonEncoder(image.size)
    return encoder.encode(image, duration_ms, np.random.default_rng(seed))


@dataclass(frozen=True)
class LabTrace:
    """One sample run through a network with the engine's detailed recording.

    Attributes
    ----------
    events : Events, the input events (E of them)
    duration_ms : float
    sizes : tuple, layer sizes, inputs first
    kappas : (L,) float64, lateral inhibition per layer
    dynamics : kernels.Dynamics the engine ran with (rho = 0: the network does not change)
    watch : list of (layer, neuron), the watched neurons; layer 0 is the first hidden layer
    thresholds : (K,) float32, Vth of each watched neuron (constant: rho = 0)
    rows : dict of (R,) arrays, one row per event reaching a watched neuron's layer, in the
        engine's order: ``t_ms``, ``watch`` (index into ``watch``), ``peak``, ``end`` and the
        fields of :class:`spikeviz.engine.kernels.Detail` (``event``, ``before``, ...)
    spikes : dict of (S,) arrays ``t_ms``, ``layer``, ``neuron``, ``event``
    pixels : (n_inputs,) int, the image pixel that feeds each input channel (the inverse of the
        encoder's permutation); None: pixel c feeds channel c
    """

    events: Events
    duration_ms: float
    sizes: tuple
    kappas: np.ndarray
    dynamics: object
    watch: list
    thresholds: np.ndarray
    rows: dict
    spikes: dict
    pixels: np.ndarray = None

    @property
    def n_events(self):
        return int(self.events.times_ms.size)

    def event_pixels(self, events):
        """The image pixels (row-major indices) that sent input events ``events`` (indices)."""
        channels = self.events.channels[events]
        return channels if self.pixels is None else self.pixels[channels]

    def name(self, w):
        layer, neuron = self.watch[w]
        return f"{layer_name(layer, len(self.sizes) - 1)} {neuron}"

    def output_counts(self, event):
        """(N_out,) spike counts of the output layer once input event ``event`` is processed."""
        out = self.spikes["layer"] == len(self.sizes) - 2
        done = self.spikes["event"] <= event
        return np.bincount(self.spikes["neuron"][out & done], minlength=self.sizes[-1])

    def decision(self, event):
        """The predicted digit after ``event`` (argmax of the counts), None while silent or tied."""
        counts = self.output_counts(event)
        best = np.flatnonzero(counts == counts.max())
        return int(best[0]) if counts.max() > 0 and best.size == 1 else None


def layer_name(layer, n_layers):
    """The name of layer ``layer`` (0: the first hidden) of ``n_layers``: 'output', 'hidden'
    when there is one hidden layer, else 'hidden1', 'hidden2', ..."""
    if layer == n_layers - 1:
        return "output"
    return "hidden" if n_layers == 2 else f"hidden{layer + 1}"


def _lab_dynamics(dynamics):
    # The lab explains inference: threshold regularization (training only) would change the
    # network while the student watches.
    return dynamics._replace(rho=0.0)


def most_active_hidden(network, events, duration_ms, *, kappas, dynamics, count=4):
    """The ``count`` neurons of the first hidden layer that fire most on ``events`` (ties: lower
    index first), as (layer, neuron) pairs."""
    sim = Simulator(network.copy())
    sim.run(events, duration_ms, kappas=kappas, dynamics=_lab_dynamics(dynamics))
    order = np.argsort(-sim.counts(0), kind="stable")[:count]
    return [(0, int(n)) for n in order]


def record_sample(network, events, duration_ms, *, kappas, dynamics, watch, permutation=None):
    """Run ``events`` through a copy of ``network`` with the engine's detailed recording.

    Parameters
    ----------
    network : Network (not changed)
    events : Events
    duration_ms : float
    kappas : sequence of float, one per layer
    dynamics : kernels.Dynamics; its rho is set to 0 (no threshold regularization)
    watch : sequence of (layer, neuron) pairs
    permutation : (n_inputs,) int, optional: the encoder's (pixel p feeds channel
        ``permutation[p]``), for the trace's :meth:`LabTrace.event_pixels`

    Returns
    -------
    LabTrace
    """
    watch = [(int(layer), int(neuron)) for layer, neuron in watch]
    if not watch:
        raise ConfigError("watch at least one neuron, as (layer, neuron) pairs")
    kappas = check_kappas(kappas, len(network.weights))
    dynamics = _lab_dynamics(dynamics)
    n_events = len(events.times_ms)
    spike_room, row_room = n_events, len(watch) * n_events
    while True:  # rarely twice: when the first guess of the spike count was too small
        sim = Simulator(network.copy(), watch=watch, spike_capacity=spike_room,
                        potential_capacity=row_room, detail=True)
        sim.run(events, duration_ms, kappas=kappas, dynamics=dynamics)
        spikes_seen, rows_seen = (int(n) for n in sim.recording.seen)
        if spikes_seen <= spike_room and rows_seen <= row_room:
            break
        spike_room, row_room = spikes_seen, rows_seen
    t_ms, which, peak, end = sim.recorded_potentials()
    detail = sim.recorded_detail()
    rows = {"t_ms": t_ms, "watch": which, "peak": peak, "end": end}
    rows.update({name: detail[name] for name in DETAIL_ROWS})
    spike_t, spike_layer, spike_neuron = sim.recorded_spikes()
    spikes = {"t_ms": spike_t, "layer": spike_layer, "neuron": spike_neuron,
              "event": detail["spike_event"]}
    thresholds = np.array([network.thresholds[layer][n] for layer, n in watch])
    return LabTrace(events=events, duration_ms=float(duration_ms), sizes=network.sizes,
                    kappas=kappas, dynamics=dynamics, watch=watch, thresholds=thresholds,
                    rows=rows, spikes=spikes,
                    pixels=None if permutation is None else np.argsort(permutation))


@dataclass(frozen=True)
class Step:
    """What one arrival did to a watched neuron: the input event itself (first hidden layer) or
    one spike of the layer below, i.e. one row of the engine's detailed recording.

    Each step adds up on its own: ``decayed`` = ``before`` exp(-dt / tau_mp) (1), ``peak`` =
    max(decayed + jump, -Vth) (1); a neuron that fires first takes the inhibition of the ``rank``
    rivals that fired before it, then its reset (2); the remaining ``inhibitions`` (4), each
    kappa * Vth, and the clip at -Vth give ``end``, the next step's ``before``.
    """

    sender: str  # where the arrival came from: 'input 233' or 'hidden 17'
    before: float  # V before the arrival
    dt_ms: float  # time since the layer's previous arrival (0 after the first of an event)
    decayed: float  # V after the decay (1)
    jump: float  # w * w_dyn added (1)
    gain: float  # dynamic weight w_dyn (times the training scale, 1 here)
    peak: float  # V after the jump, clipped at -Vth
    rank: int  # its place in its layer's firing order on this arrival; -1: it did not fire
    reset: float  # V right after its reset (2); NaN if it did not fire
    inhibitions: int  # spikes of rivals in a WTA layer on this arrival (0 without WTA)
    end: float  # V once the arrival is fully processed

    @property
    def fired(self):
        return self.rank >= 0


@dataclass(frozen=True)
class NeuronMoment:
    """What one input event did to one watched neuron: a :class:`Step` per arrival at its layer
    (none when nothing reached it).  Potentials are in the neuron's own units."""

    name: str
    threshold: float  # Vth (constant: the lab runs without threshold regularization)
    kappa: float  # lateral inhibition of its layer
    steps: tuple  # of Step, in the engine's order
    held: float  # V as its last arrival left it, shown when nothing reaches it (lazy decay)

    @property
    def reached(self):
        return bool(self.steps)

    @property
    def before(self):
        return self.steps[0].before if self.steps else self.held

    @property
    def end(self):
        return self.steps[-1].end if self.steps else self.held

    @property
    def fired(self):
        return any(step.fired for step in self.steps)

    @property
    def clipped(self):
        """The clip at -Vth acted on this event (after an input, a reset or an inhibition)."""
        return any(-self.threshold in (step.peak, step.end) for step in self.steps)

    @property
    def refractory(self):
        return any(step.gain < 1.0 for step in self.steps)


def describe_event(trace, event):
    """The moments of every watched neuron at input event ``event``, in ``trace.watch`` order."""
    rows = trace.rows
    here = np.flatnonzero(rows["event"] == event)
    moments = []
    for w, (layer, _) in enumerate(trace.watch):
        mine = here[rows["watch"][here] == w]
        kappa = float(trace.kappas[layer])
        steps = tuple(_step(trace, layer, r) for r in mine)
        moments.append(NeuronMoment(name=trace.name(w), threshold=float(trace.thresholds[w]),
                                    kappa=kappa, steps=steps, held=_held(trace, w, event)))
    return moments


def _step(trace, layer, r):
    """Row ``r`` of the trace, as a Step of a neuron of ``layer``."""
    rows = trace.rows
    n_layers = len(trace.sizes) - 1
    sender = "input" if layer == 0 else layer_name(layer - 1, n_layers)
    rank = int(rows["rank"][r])
    rivals = int(rows["winners"][r]) - (rank >= 0)
    return Step(
        sender=f"{sender} {int(rows['source'][r])}", before=float(rows["before"][r]),
        dt_ms=float(rows["dt_ms"][r]), decayed=float(rows["decayed"][r]),
        jump=float(rows["jump"][r]), gain=float(rows["gain"][r]), peak=float(rows["peak"][r]),
        rank=rank, reset=float(rows["reset"][r]),
        inhibitions=rivals if trace.kappas[layer] != 0 else 0, end=float(rows["end"][r]))


def _held(trace, w, event):
    """V of watched neuron ``w`` as its last row before ``event`` left it (0 at the start)."""
    rows = trace.rows
    earlier = np.flatnonzero((rows["watch"] == w) & (rows["event"] < event))
    return float(rows["end"][earlier[-1]]) if earlier.size else 0.0


def potential_curve(trace, w, points_per_gap=6, gap_ms=0.5):
    """(t_ms, V / Vth) of watched neuron ``w`` over the sample, for plotting: at every row its
    decayed, peak (and reset) and end values from the engine; across gaps longer than
    ``gap_ms`` between two rows, the exponential decay (1) drawn at ``points_per_gap`` points.
    (Vth is constant: the lab runs without threshold regularization.)
    """
    rows = trace.rows
    mine = np.flatnonzero(rows["watch"] == w)
    tau = trace.dynamics.tau_mp_ms
    t_out, v_out = [0.0], [0.0]
    for r in mine:
        t = rows["t_ms"][r]
        last_t, last_v = t_out[-1], v_out[-1]
        if t - last_t > gap_ms:
            between = np.linspace(last_t, t, points_per_gap + 2)[1:-1]
            t_out.extend(between)
            v_out.extend(last_v * np.exp((last_t - between) / tau))
        steps = [rows["decayed"][r], rows["peak"][r]]
        if rows["rank"][r] >= 0:
            steps.append(rows["reset"][r])
        steps.append(rows["end"][r])
        t_out.extend([t] * len(steps))
        v_out.extend(float(v) for v in steps)
    return np.asarray(t_out), np.asarray(v_out) / float(trace.thresholds[w])


#: The mechanisms the lab names, in the order an event applies them.
MECHANISMS = ("input", "decay", "jump", "spike", "inhibition", "clip", "refractory", "output")


def _fmt(value):
    return f"{value:+.4f}"


def story(trace, event):
    """What happened at input event ``event``, mechanism by mechanism: a list of (mechanism,
    sentence) pairs in the order of :data:`MECHANISMS`, numbers from the engine's rows."""
    t_ms = float(trace.events.times_ms[event])
    channel = int(trace.events.channels[event])
    reached = [m for m in describe_event(trace, event) if m.reached]
    told = _decay_sentences(reached, trace.dynamics.tau_mp_ms)
    for m in reached:
        told += _neuron_sentences(m)
    told.sort(key=lambda pair: MECHANISMS.index(pair[0]))  # stable: neurons keep their order
    told.insert(0, ("input", f"t = {t_ms:.3f} ms: input {channel} sends an event"))
    return told + _output_sentence(trace, event)


def _decay_sentences(reached, tau_mp_ms):
    """One decay (1) per layer: all its neurons share the factor; one of them as an example."""
    told, layers = [], set()
    for m in reached:
        layer, first = m.name.rsplit(" ", 1)[0], m.steps[0]
        if first.dt_ms > 0 and first.before != 0 and layer not in layers:
            layers.add(layer)
            factor = math.exp(-first.dt_ms / tau_mp_ms)
            told.append(("decay", f"{layer}: {first.dt_ms:.3f} ms since the layer's last event, "
                                  f"V x {factor:.4f} (e.g. {m.name}: {_fmt(first.before)} -> "
                                  f"{_fmt(first.decayed)})"))
    return told


def _neuron_sentences(m):
    """The mechanisms that acted on one reached neuron, arrival by arrival."""
    told = []
    for step in m.steps:
        who = f"{m.name} <- {step.sender}"
        told += _step_sentences(m, step, who)
    if m.refractory:
        gain = min(step.gain for step in m.steps)
        told.append(("refractory", f"{m.name}: refractory, w_dyn = {gain:.3f} recovering as "
                                   "(dt / T_ref)^2"))
    return told


def _step_sentences(m, step, who):
    """Jump, spike, inhibition and clip of one arrival, each with its own numbers."""
    weight = f" (w_dyn {step.gain:.2f})" if step.gain < 1 else ""
    told = [("jump", f"{who}: V {_fmt(step.decayed)} + w * w_dyn {_fmt(step.jump)}{weight} "
                     f"-> {_fmt(step.peak)}")]
    if step.fired:
        earlier = f" after {step.rank} earlier winner(s)' inhibition," if step.rank else ""
        told.append(("spike", f"{who} reached Vth = {m.threshold:.4f}: spike,{earlier} "
                              f"subtractive reset V -= gamma * Vth -> {_fmt(step.reset)}"))
    if step.inhibitions:
        told.append(("inhibition", f"{who}: {step.inhibitions} rival spike(s) in its WTA layer, "
                                   f"each kappa * Vth = {m.kappa:g} x {m.threshold:.4f} = "
                                   f"{_fmt(m.kappa * m.threshold)} -> V = {_fmt(step.end)}"))
    if -m.threshold in (step.peak, step.end):
        told.append(("clip", f"{who}: held at -Vth = {-m.threshold:.4f} (clipping)"))
    return told


def _output_sentence(trace, event):
    out = (trace.spikes["event"] == event) & (trace.spikes["layer"] == len(trace.sizes) - 2)
    if not out.any():
        return []
    counts = " ".join(map(str, trace.output_counts(event)))
    decision = trace.decision(event)
    verdict = "tie" if decision is None else f"decision {decision}"
    fired = ", ".join(str(n) for n in trace.spikes["neuron"][out])
    return [("output", f"output {fired} fired: counts {counts} -> {verdict}")]


def next_event(trace, start, mechanism, step=1):
    """The first event after ``start`` (before it when ``step`` is -1) at which ``mechanism``
    acts on a watched neuron (``output``: an output spike); None if there is none."""
    if mechanism not in MECHANISMS:
        raise ConfigError(f"unknown mechanism {mechanism!r}: use one of {', '.join(MECHANISMS)}")
    candidates = _events_with(trace, mechanism)
    later = candidates[candidates > start] if step > 0 else candidates[candidates < start][::-1]
    return int(later[0]) if later.size else None


def _events_with(trace, mechanism):
    """Sorted event indices at which ``mechanism`` acts on a watched neuron."""
    rows = trace.rows
    if mechanism == "output":
        out = trace.spikes["layer"] == len(trace.sizes) - 2
        return np.unique(trace.spikes["event"][out])
    acting = {
        "input": np.ones(rows["event"].size, bool),
        "decay": (rows["dt_ms"] > 0) & (rows["before"] != 0),
        "jump": rows["jump"] != 0,
        "spike": rows["rank"] >= 0,
        "inhibition": (rows["winners"] - (rows["rank"] >= 0) > 0)
        & (trace.kappas[np.array(trace.watch)[rows["watch"], 0]] != 0),
        "clip": (rows["peak"] == -rows["threshold"]) | (rows["end"] == -rows["threshold"]),
        "refractory": rows["gain"] < 1,
    }[mechanism]
    return np.unique(rows["event"][acting])


# --- a digit drawn by hand ---


def rasterize_strokes(xs, ys, size=28, pen_px=1.0):
    """A drawn digit as an MNIST-like image: strokes (lists of x and y in pixel units, y up,
    0..size) drawn with a soft pen of ``pen_px`` (Gaussian sigma), then moved so that their
    center of mass is the image's center, as MNIST's digits are.

    Returns
    -------
    (size, size) uint8 image, 0..255; all zeros when there is no stroke
    """
    centers = np.arange(size) + 0.5
    image = np.zeros((size, size))
    for stroke_x, stroke_y in zip(xs, ys):
        points = _densify(np.asarray(stroke_x, float), np.asarray(stroke_y, float))
        for x, y in points:
            row, col = size - y, x  # image rows run downward
            blob = np.exp(-((centers[:, None] - row) ** 2 + (centers[None, :] - col) ** 2)
                          / (2 * pen_px**2))
            image = np.maximum(image, blob)
    if image.max() == 0:
        return image.astype(np.uint8)
    rows, cols = np.indices(image.shape)
    shift_r = int(round(size / 2 - 0.5 - np.average(rows, weights=image)))
    shift_c = int(round(size / 2 - 0.5 - np.average(cols, weights=image)))
    image = np.roll(image, (shift_r, shift_c), axis=(0, 1))
    return np.round(255 * image / image.max()).astype(np.uint8)


def _densify(x, y, spacing=0.25):
    """Points along a polyline, at most ``spacing`` pixels apart."""
    if x.size < 2:
        return list(zip(x, y))
    points = []
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:]):
        n = max(1, int(np.ceil(np.hypot(x1 - x0, y1 - y0) / spacing)))
        fractions = np.arange(n) / n
        points += list(zip(x0 + fractions * (x1 - x0), y0 + fractions * (y1 - y0)))
    points.append((x[-1], y[-1]))
    return points


# --- the single-neuron experiment ---


def drive_events(rate_hz, duration_ms, *, regular, rng):
    """A spike train on one input: ``rate_hz`` events/s, regular (evenly spaced, the first
    after one period) or Poisson, within [0, duration_ms]."""
    if not (rate_hz > 0 and duration_ms > 0):
        raise ConfigError(f"the drive needs a positive rate and duration, got {rate_hz} Hz, "
                          f"{duration_ms} ms")
    period_ms = 1000.0 / rate_hz
    if regular:
        times = np.arange(1, int(duration_ms / period_ms) + 1) * period_ms
    else:
        times = np.cumsum(rng.exponential(period_ms, int(2 * duration_ms / period_ms) + 20))
    times = times[times <= duration_ms]
    return Events(times, np.zeros(times.size, np.int32))


def _single_neuron(weight, threshold):
    if not threshold > 0:
        raise ConfigError(f"the threshold must be positive, got {threshold}")
    return Network([np.array([[weight]])], [np.array([threshold])])


def single_neuron_run(*, rate_hz, regular, weight, threshold, dynamics, duration_ms, seed=0):
    """One neuron, one input of weight ``weight`` driven at ``rate_hz`` (see drive_events),
    recorded in detail: a LabTrace watching neuron (0, 0)."""
    events = drive_events(rate_hz, duration_ms, regular=regular,
                          rng=np.random.default_rng(seed))
    return record_sample(_single_neuron(weight, threshold), events, duration_ms, kappas=[0.0],
                         dynamics=dynamics, watch=[(0, 0)])


def simulated_rates(input_rates_hz, *, regular, weight, threshold, dynamics, duration_ms,
                    seed=0):
    """(n,) output rates, Hz, of the engine's neuron at each input rate (no recording)."""
    sim = Simulator(_single_neuron(weight, threshold))
    dynamics = _lab_dynamics(dynamics)
    rates = []
    for k, rate in enumerate(input_rates_hz):
        events = drive_events(rate, duration_ms, regular=regular,
                              rng=np.random.default_rng([seed, k]))
        sim.run(events, duration_ms, kappas=[0.0], dynamics=dynamics)
        rates.append(sim.counts(0)[0] * 1000.0 / duration_ms)
    return np.array(rates)


def analytic_rate_hz(input_rate_hz, *, weight, threshold, tau_ms, t_ref_ms=0.0, gamma=1.0):
    """Firing rate, Hz, of the LIF neuron under the mean drive I = w * rate (the limit of many
    small jumps), with the subtractive reset and the refractory dynamic weight of (1)-(2).

    Between spikes dV/dt = -V/tau + I * w_dyn(s), w_dyn = (s / T_ref)^2 for s < T_ref, else 1,
    starting from V0 = max((1 - gamma) Vth, -Vth).  In closed form for s <= T_ref:
    V(s) = exp(-s/tau) [V0 + I/T_ref^2 (exp(s/tau)(tau s^2 - 2 tau^2 s + 2 tau^3) - 2 tau^3)];
    after T_ref, the time to threshold is tau ln((I tau - V) / (I tau - Vth)).  At most one
    spike per input event, so the rate is capped at the input rate.
    """
    rates = np.atleast_1d(np.asarray(input_rate_hz, dtype=float))
    return np.array([_analytic_one(r, weight, threshold, tau_ms, t_ref_ms, gamma) for r in rates])


def _analytic_one(input_rate_hz, weight, threshold, tau, t_ref, gamma):
    drive = weight * input_rate_hz / 1000.0  # per ms
    steady = drive * tau
    v0 = max((1.0 - gamma) * threshold, -threshold)

    def v_refractory(s):
        if t_ref <= 0:
            return v0 * math.exp(-s / tau)
        ramp = math.exp(s / tau) * (tau * s * s - 2 * tau**2 * s + 2 * tau**3) - 2 * tau**3
        return math.exp(-s / tau) * (v0 + drive / t_ref**2 * ramp)

    if t_ref > 0 and v_refractory(t_ref) >= threshold:
        low, high = 0.0, t_ref  # it reaches threshold while still refractory: bisect
        for _ in range(60):
            mid = 0.5 * (low + high)
            low, high = (low, mid) if v_refractory(mid) >= threshold else (mid, high)
        interval = high
    else:
        v = v_refractory(t_ref) if t_ref > 0 else v0
        if steady <= threshold:
            return 0.0
        interval = t_ref + tau * math.log((steady - v) / (steady - threshold))
    return min(1000.0 / interval, input_rate_hz)
