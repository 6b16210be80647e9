"""Networks of LIF layers and the simulator that runs one sample through them.

The equations are in :mod:`spikeviz.engine.kernels`; this module validates inputs, allocates the
state once and hands plain arrays to the kernels.
"""

import numpy as np

from spikeviz.encode import Events
from spikeviz.engine import kernels
from spikeviz.errors import ConfigError

FLOAT = np.float32  # neuron state and weights; times are float64


class Network:
    """Weights and thresholds of a fully connected SNN, input to output.

    The numbers live in two flat buffers shared with the simulator's kernels; ``weights`` and
    ``thresholds`` are per-layer views into them, so changing a view in place changes the network.

    Parameters
    ----------
    weights : sequence of (M_l, N_l) arrays; row k of layer l is the fan-out of its input k
    thresholds : sequence of (N_l,) arrays
    threshold_floors : sequence of float, lower bound of each layer's thresholds (Sec. 5.2);
        0 when not given
    """

    def __init__(self, weights, thresholds, threshold_floors=None):
        weights = [np.asarray(w, dtype=FLOAT) for w in weights]
        thresholds = [np.asarray(t, dtype=FLOAT).reshape(-1) for t in thresholds]
        _check_shapes(weights, thresholds)
        self.weight_start = np.cumsum([0] + [w.size for w in weights]).astype(np.int64)
        self.neuron_start = np.cumsum([0] + [t.size for t in thresholds]).astype(np.int64)
        self.flat_weights = np.concatenate([w.ravel() for w in weights])
        self.flat_thresholds = np.concatenate(thresholds)
        self.weights = [
            self.flat_weights[a:b].reshape(w.shape)
            for a, b, w in zip(self.weight_start[:-1], self.weight_start[1:], weights)
        ]
        self.thresholds = [
            self.flat_thresholds[a:b] for a, b in zip(self.neuron_start[:-1], self.neuron_start[1:])
        ]
        if threshold_floors is None:
            threshold_floors = [0.0] * len(weights)
        # a copy: a view would let the caller's floors (e.g. a training run's) change this network
        self.threshold_floors = np.array(threshold_floors, dtype=FLOAT).reshape(len(weights))

    @property
    def sizes(self):
        """(inputs, hidden..., outputs), e.g. (784, 800, 10)."""
        return (self.weights[0].shape[0], *(w.shape[1] for w in self.weights))

    def copy(self):
        """An independent copy: weights, thresholds and floors."""
        return Network(self.weights, self.thresholds, self.threshold_floors)

    def scaled(self, scale):
        """An independent copy with a per-neuron weight ``scale`` folded into the weights.

        Parameters
        ----------
        scale : (total neurons,) array, in ``neuron_start`` order: the training simulator's
            factor on each neuron's incoming weights (real weight = stored weight * scale)
        """
        scale = np.asarray(scale, dtype=FLOAT)
        bounds = zip(self.neuron_start[:-1], self.neuron_start[1:])
        weights = [w * scale[a:b] for w, (a, b) in zip(self.weights, bounds)]
        return Network(weights, self.thresholds, self.threshold_floors)


def _check_shapes(weights, thresholds):
    if not weights or len(weights) != len(thresholds):
        raise ConfigError(
            f"need one threshold vector per weight matrix: got {len(weights)} weight matrices "
            f"and {len(thresholds)} threshold vectors"
        )
    for index, (w, th) in enumerate(zip(weights, thresholds)):
        if w.ndim != 2 or th.shape != (w.shape[1],):
            raise ConfigError(
                f"layer {index}: weights {w.shape} and thresholds {th.shape} do not match; "
                "weights are (inputs, neurons) and thresholds (neurons,)"
            )
        if index and w.shape[0] != weights[index - 1].shape[1]:
            raise ConfigError(
                f"layer {index} takes {w.shape[0]} inputs but layer {index - 1} has "
                f"{weights[index - 1].shape[1]} neurons"
            )


def _check_sizes(sizes):
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(
            f"layer sizes must be at least (inputs, outputs), all positive; got {sizes}"
        )
    return sizes


def init_network(sizes, rng, *, alpha=3.0, floor_fraction=0.5):
    """Initialize as in (9): w ~ U[-sqrt(3/M), sqrt(3/M)], Vth = alpha * sqrt(3/M).

    Parameters
    ----------
    sizes : sequence of int, (inputs, hidden..., outputs)
    rng : numpy.random.Generator
    alpha : float or sequence of float (one per layer), 3..10 in the paper
    floor_fraction : float, the threshold floor as a fraction of the initial threshold
    """
    sizes = _check_sizes(sizes)
    alphas = np.broadcast_to(np.asarray(alpha, dtype=float), (len(sizes) - 1,))
    if np.any(alphas <= 0):
        raise ConfigError(f"alpha must be positive (the paper uses 3..10), got {alpha!r}")
    weights, thresholds, floors = [], [], []
    for fan_in, width, a in zip(sizes[:-1], sizes[1:], alphas):
        bound = np.sqrt(3.0 / fan_in)
        weights.append(rng.uniform(-bound, bound, size=(fan_in, width)))
        thresholds.append(np.full(width, a * bound))
        floors.append(float(floor_fraction * a * bound))
    return Network(weights, thresholds, floors)


_DYNAMICS_RANGES = {
    "tau_mp_ms": (lambda v: v > 0, "a positive time constant in ms (20 for MNIST)"),
    "t_ref_ms": (lambda v: v >= 0, "a refractory period >= 0 ms (1 in the paper)"),
    "w_dyn0": (lambda v: 0 <= v <= 1, "a value in [0, 1] (0 in the paper)"),
    "gamma": (lambda v: v > 0, "a positive reset factor (1 in the paper)"),
    "rho": (lambda v: v >= 0, "a threshold regularization step >= 0 (4e-5..2e-4 in the paper)"),
    "weight_boost": (lambda v: v >= 0, "a value >= 0 (1: weights take the blocked decrease)"),
}


def make_dynamics(*, tau_mp_ms=20.0, t_ref_ms=1.0, w_dyn0=0.0, gamma=1.0, rho=0.0, weight_boost=1.0,
                  spread_blocked=False):
    """Validated :class:`kernels.Dynamics`; defaults are the paper's PI-MNIST values."""
    values = dict(
        tau_mp_ms=tau_mp_ms, t_ref_ms=t_ref_ms, w_dyn0=w_dyn0, gamma=gamma, rho=rho,
        weight_boost=weight_boost,
    )
    for name, (in_range, expected) in _DYNAMICS_RANGES.items():
        value = float(values[name])
        if not (np.isfinite(value) and in_range(value)):
            raise ConfigError(f"{name}={values[name]!r} is out of range: use {expected}")
        values[name] = value
    return kernels.Dynamics(**values, spread_blocked=bool(spread_blocked))


def check_kappas(kappas, n_layers):
    """Lateral inhibition per layer: 0 (no WTA) or in [-1, 0)."""
    kappas = np.asarray(kappas, dtype=np.float64).reshape(-1)
    if kappas.size != n_layers:
        raise ConfigError(
            f"need one lateral inhibition strength per layer ({n_layers}), got {kappas.size}; "
            "use 0 for a layer without WTA"
        )
    bad = ~((kappas == 0) | ((kappas >= -1) & (kappas < 0)))
    if bad.any():
        raise ConfigError(
            f"kappa {kappas[bad].tolist()} out of range: lateral inhibition is in [-1, 0) "
            "(-0.4 hidden and -1.0 output in the paper), or 0 for no WTA"
        )
    return kappas


class Simulator:
    """Runs samples through a network, one at a time, reusing its state arrays.

    The simulator shares the network's weight and threshold arrays: threshold regularization
    during training changes them in place.

    Parameters
    ----------
    network : Network
    watch : sequence of (layer, neuron) pairs whose potentials are recorded at every event
    spike_capacity, potential_capacity : int
        Size of the recording buffers (rows past them are counted, not stored).
    detail : bool
        Also record, for every potential row, each step of the event (decay, input jump,
        dynamic weight, reset, WTA winners: :class:`kernels.Detail`) and the input event of each
        spike; off (the default), it costs nothing.
    """

    def __init__(self, network, *, watch=(), spike_capacity=0, potential_capacity=0,
                 detail=False):
        self.network = network
        self.state = _state(network)
        n_inputs = network.sizes[0]
        self.inputs = kernels.Inputs(
            np.full(n_inputs, -np.inf), np.zeros(n_inputs, FLOAT), np.zeros(n_inputs, np.int32)
        )
        self.recording = _recording(network.sizes, watch, spike_capacity, potential_capacity,
                                    detail)
        # 1 for the neurons taking part in the next samples; dropout sets 0 for those it silences
        self.keep = np.ones(network.flat_thresholds.size, FLOAT)

    def run(self, events, duration_ms, *, kappas, dynamics):
        """Simulate one presentation from rest.

        Parameters
        ----------
        events : Events, times in [0, duration_ms], channels in [0, inputs)
        duration_ms : float, presentation length; traces are read out at its end
        kappas : sequence of float, one per layer (0 = no WTA)
        dynamics : kernels.Dynamics, from :func:`make_dynamics`

        Returns
        -------
        (N_out,) int32 view of the output layer's spike counts (valid until the next run)
        """
        times, channels = _check_events(events, duration_ms, self.network.sizes[0])
        kappas = check_kappas(kappas, len(self.network.weights))
        return self.run_checked(times, channels, float(duration_ms), kappas, dynamics)

    def run_checked(self, times_ms, channels, duration_ms, kappas, dynamics):
        """:meth:`run` for inputs already validated: float64 times, int32 channels, float64
        kappas from :func:`check_kappas` (the hot loop of inference and training)."""
        self.state.floor[:] = self.network.threshold_floors
        kernels.run_sample(
            times_ms, channels, duration_ms, self.inputs, self.state, kappas, dynamics,
            self.recording, self.keep,
        )
        return self.counts(-1)

    def _layer_slice(self, layer):
        starts = self.network.neuron_start
        layer = range(len(starts) - 1)[layer]
        return slice(starts[layer], starts[layer + 1])

    def counts(self, layer):
        """(N,) int32 spike counts of a layer (negative: from the end) in the last sample."""
        return self.state.counts[self._layer_slice(layer)]

    def traces(self, layer):
        """(N,) float32 traces (3) of a layer's outputs at the end of the last sample."""
        return self.state.trace[self._layer_slice(layer)]

    def potentials(self, layer):
        """(N,) float32 membrane potentials of a layer at the end of the last sample."""
        return self.state.potentials[self._layer_slice(layer)]

    def thresholds(self, layer):
        """(N,) float32 thresholds of a layer (training's threshold regularization moves them)."""
        return self.state.thresholds[self._layer_slice(layer)]

    def recorded_spikes(self):
        """(times_ms, layer, neuron) of the stored spikes of the last sample."""
        rec = self.recording
        n = min(rec.seen[0], rec.spike_ms.size)
        return rec.spike_ms[:n].copy(), rec.spike_layer[:n].copy(), rec.spike_neuron[:n].copy()

    def recorded_potentials(self):
        """(times_ms, watch index, V at peak, V at end) of the stored potential rows."""
        rec = self.recording
        n = min(rec.seen[1], rec.potential_ms.size)
        return (
            rec.potential_ms[:n].copy(), rec.potential_watch[:n].copy(),
            rec.potential_peak[:n].copy(), rec.potential_end[:n].copy(),
        )

    def recorded_detail(self):
        """The detail of the stored potential rows (dict of :class:`kernels.Detail` fields, one
        value per row) and ``spike_event``, the input event of each stored spike; empty arrays
        when the simulator was made without ``detail``."""
        rec = self.recording
        rows = min(rec.seen[1], rec.detail.event.size)
        spikes = min(rec.seen[0], rec.detail.spike_event.size)
        detail = {name: getattr(rec.detail, name)[:rows].copy() for name in DETAIL_ROWS}
        detail["spike_event"] = rec.detail.spike_event[:spikes].copy()
        return detail


def _state(network):
    n = int(network.neuron_start[-1])
    n_layers = len(network.weights)
    return kernels.State(
        weights=network.flat_weights,
        weight_start=network.weight_start,
        neuron_start=network.neuron_start,
        thresholds=network.flat_thresholds,
        threshold_error=np.zeros(n),
        potentials=np.zeros(n, FLOAT),
        gain=np.ones(n, FLOAT),
        scale=np.ones(n, FLOAT),
        sum_sq=_per_neuron_sums(network, squared=True),
        col_sum=_per_neuron_sums(network, squared=False),
        boost=np.zeros(n, FLOAT),
        last_spike_ms=np.full(n, -np.inf),
        trace=np.zeros(n, FLOAT),
        counts=np.zeros(n, np.int32),
        refractory=np.zeros(n, np.int32),
        candidates=np.zeros(n, np.int32),
        after_reset=np.zeros(n, FLOAT),
        n_refractory=np.zeros(n_layers, np.int64),
        clock_ms=np.zeros(n_layers),
        floor=np.zeros(n_layers, FLOAT),
    )


def _per_neuron_sums(network, squared):
    """Sum over its inputs of each neuron's (squared) weights, float64, all layers."""
    return np.concatenate(
        [np.sum(w.astype(np.float64) ** (2 if squared else 1), axis=0) for w in network.weights]
    )


#: The per-row fields of :class:`kernels.Detail`.
DETAIL_ROWS = ("event", "source", "dt_ms", "before", "decayed", "jump", "gain", "reset", "rank",
               "winners", "threshold")


def _recording(sizes, watch, spike_capacity, potential_capacity, detail=False):
    watch = np.asarray(list(watch), dtype=np.int32).reshape(-1, 2)
    for layer, neuron in watch:
        if not (0 <= layer < len(sizes) - 1 and 0 <= neuron < sizes[layer + 1]):
            raise ConfigError(
                f"cannot watch neuron {neuron} of layer {layer}: the layers have "
                f"{list(sizes[1:])} neurons (layer 0 is the first hidden layer)"
            )
    return kernels.Recording(
        spike_ms=np.zeros(spike_capacity),
        spike_layer=np.zeros(spike_capacity, np.int32),
        spike_neuron=np.zeros(spike_capacity, np.int32),
        watch_layer=np.ascontiguousarray(watch[:, 0]),
        watch_neuron=np.ascontiguousarray(watch[:, 1]),
        watch_peak=np.zeros(len(watch), FLOAT),
        potential_ms=np.zeros(potential_capacity),
        potential_watch=np.zeros(potential_capacity, np.int32),
        potential_peak=np.zeros(potential_capacity, FLOAT),
        potential_end=np.zeros(potential_capacity, FLOAT),
        seen=np.zeros(2, np.int64),
        detail=_detail(len(watch), spike_capacity if detail else 0,
                       potential_capacity if detail else 0),
    )


def _detail(n_watched, spike_capacity, row_capacity):
    """Detail buffers of ``row_capacity`` rows (0: detail off)."""
    f32, i32 = FLOAT, np.int32
    return kernels.Detail(
        event=np.zeros(row_capacity, i32), source=np.zeros(row_capacity, i32),
        dt_ms=np.zeros(row_capacity), before=np.zeros(row_capacity, f32),
        decayed=np.zeros(row_capacity, f32), jump=np.zeros(row_capacity, f32),
        gain=np.zeros(row_capacity, f32), reset=np.zeros(row_capacity, f32),
        rank=np.zeros(row_capacity, i32), winners=np.zeros(row_capacity, i32),
        threshold=np.zeros(row_capacity, f32), spike_event=np.zeros(spike_capacity, i32),
        before_scratch=np.zeros(n_watched, f32), clock_scratch=np.zeros(n_watched),
        now=np.zeros(2, np.int64),
    )


def _check_events(events, duration_ms, n_inputs):
    if not np.isfinite(duration_ms) or duration_ms <= 0:
        raise ConfigError(f"duration must be a positive number of ms, got {duration_ms!r}")
    times = np.ascontiguousarray(events.times_ms, dtype=np.float64)
    channels = np.ascontiguousarray(events.channels, dtype=np.int32)
    if times.shape != channels.shape or times.ndim != 1:
        raise ConfigError(
            f"events need one time per channel: got times {times.shape}, channels {channels.shape}"
        )
    if times.size:
        if np.any(np.diff(times) < 0):
            raise ConfigError("event times must be sorted in time (non-decreasing)")
        if times[0] < 0 or times[-1] > duration_ms:
            raise ConfigError(
                f"event times [{times[0]}, {times[-1]}] ms fall outside the presentation "
                f"[0, {duration_ms}] ms"
            )
        if channels.min() < 0 or channels.max() >= n_inputs:
            raise ConfigError(
                f"event channels span [{channels.min()}, {channels.max()}] but the network has "
                f"{n_inputs} inputs; the input layer size must match the data"
            )
    return times, channels


__all__ = ["Events", "Network", "Simulator", "check_kappas", "init_network", "make_dynamics"]
