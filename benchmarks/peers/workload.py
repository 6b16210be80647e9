"""The one workload every tool runs, and the conversions the time-stepped peers need.

NumPy only: the Brian2 worker imports this module from an interpreter of its own (Brian2 2.9.0
does not import with NumPy 2.4, see ``brian2_peer.py``), where neither spikeviz nor numba is
installed.  The input events themselves are drawn by spikeviz's encoder in the parent process
and handed to every worker in one ``.npz`` file, so that all tools see the same spikes.
"""

import math
from typing import NamedTuple

import numpy as np


class Workload(NamedTuple):
    """The paper's PI-MNIST setting (Sec. 6), shared by spikeviz and its peers."""

    sizes: tuple = (784, 800, 10)
    train_ms: float = 50.0  # presentation while training
    infer_ms: float = 1000.0  # presentation at test time
    rate_hz: float = 5000.0  # input events per second, whole image
    tau_mp_ms: float = 20.0
    t_ref_ms: float = 1.0
    alpha: float = 3.0  # initial threshold = alpha * sqrt(3 / fan-in), eq. (9)
    kappas: tuple = (-0.4, -1.0)  # WTA strength, hidden and output layer
    dt_ms: float = 1.0  # time step of the time-stepped peers (spikeviz has none)


WORKLOAD = Workload()


def n_steps(duration_ms, dt_ms):
    """Time bins covering ``[0, duration_ms]``."""
    return int(math.ceil(duration_ms / dt_ms - 1e-9))


def decay_per_step(workload=WORKLOAD):
    """Membrane decay over one time step, exp(-dt / tau) (exact for a leaky integrator)."""
    return math.exp(-workload.dt_ms / workload.tau_mp_ms)


def bin_index(times_ms, duration_ms, dt_ms):
    """Bin of each event; an event at exactly ``duration_ms`` goes to the last bin."""
    last = n_steps(duration_ms, dt_ms) - 1
    return np.minimum((np.asarray(times_ms) / dt_ms).astype(np.int64), last)


def dense_bins(samples, duration_ms, dt_ms, n_inputs, dtype=np.float32):
    """Events of a batch as a dense (T, B, n_inputs) array of event counts per bin.

    Every event is kept: two events of one channel in one bin make a count of 2 (the peers'
    linear layers then deliver twice the weight, as spikeviz does for two events).

    Parameters
    ----------
    samples : sequence of (times_ms, channels) pairs, one per batch row
    duration_ms, dt_ms : float
    n_inputs : int
    """
    out = np.zeros((n_steps(duration_ms, dt_ms), len(samples), n_inputs), dtype)
    for row, (times_ms, channels) in enumerate(samples):
        np.add.at(out, (bin_index(times_ms, duration_ms, dt_ms), row, channels), 1)
    return out


def split_repeats(times_ms, channels, duration_ms, dt_ms, n_inputs):
    """Brian2's spike generator refuses two spikes of one neuron in one time step: give the
    k-th event of a channel within a bin to copy k of the input layer (channel + k * n_inputs),
    whose synapses carry the same weights.  Returns (bins, generator indices, copies needed)."""
    bins = bin_index(times_ms, duration_ms, dt_ms)
    key = bins * n_inputs + np.asarray(channels, np.int64)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    rank_sorted = np.arange(key.size) - np.repeat(starts, np.diff(np.r_[starts, key.size]))
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    copies = int(rank.max()) + 1 if rank.size else 1
    return bins, np.asarray(channels, np.int64) + rank * n_inputs, copies


def init_peer_weights(workload, rng):
    """Weights of eq. (9) divided by the initial threshold, for peers whose threshold is 1.

    spikeviz starts with w ~ U[-sqrt(3/M), sqrt(3/M)] and Vth = alpha sqrt(3/M); dividing both
    by Vth gives w ~ U[-1/alpha, 1/alpha] and Vth = 1 (each peer's default), the same dynamics.
    Returns one (fan_out, fan_in) float32 matrix per layer (the torch Linear layout).
    """
    return [rng.uniform(-1 / workload.alpha, 1 / workload.alpha, size=(fan_out, fan_in))
            .astype(np.float32) for fan_in, fan_out in zip(workload.sizes[:-1], workload.sizes[1:])]


def pack_events(events):
    """List of (times_ms, channels) -> flat arrays and offsets, for an ``.npz`` file."""
    lengths = [len(t) for t, _ in events]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    times = np.concatenate([t for t, _ in events]) if events else np.zeros(0)
    channels = np.concatenate([c for _, c in events]) if events else np.zeros(0, np.int32)
    return times.astype(np.float64), channels.astype(np.int32), offsets


def unpack_events(times, channels, offsets):
    return [(times[a:b], channels[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


def mean_events(events):
    """Mean number of input events per sample of a list of (times_ms, channels)."""
    return float(np.mean([len(times) for times, _ in events]))


def synaptic_events(events_per_sample, hidden_spikes_per_sample, sizes):
    """Feed-forward synaptic events of one sample: every input event reaches the hidden layer,
    every hidden spike the output layer (each tool's own activity; the tables count these)."""
    return events_per_sample * sizes[1] + hidden_spikes_per_sample * sizes[2]


def lateral_updates(hidden_spikes_per_sample, sizes):
    """WTA updates of one sample: a hidden spike inhibits the other hidden neurons (the output
    layer's few are left out).  Only spikeviz and Brian2 do this work."""
    return hidden_spikes_per_sample * (sizes[1] - 1)


def reference_neuron(currents, beta, threshold=1.0):
    """The leaky integrator every time-stepped peer should be, one step at a time:
    V <- beta V + I; a spike when V >= threshold, then V -= threshold at once (spikeviz's reset).
    Returns the potentials after each step's reset and the spikes, both (T,)."""
    v, potentials, spikes = 0.0, [], []
    for current in currents:
        v = beta * v + current
        spike = v >= threshold
        v -= threshold * spike
        potentials.append(v)
        spikes.append(spike)
    return np.array(potentials), np.array(spikes, dtype=float)


def neuron_agreement(potentials, spikes, currents, beta, threshold=1.0, tolerance=1e-4):
    """How one peer neuron driven by ``currents`` compares with ``reference_neuron``: the largest
    potential error, spike-train equality and ``ok``; also the closed form of the first,
    spike-free stretch, V_t = I (1 - beta^t) / (1 - beta) for a constant I, as a second check."""
    expected_v, expected_s = reference_neuron(currents, beta, threshold)
    potentials, spikes = np.asarray(potentials, float), np.asarray(spikes, float)
    error = float(np.max(np.abs(potentials - expected_v)))
    same_spikes = bool(np.array_equal(spikes, expected_s))
    first = int(np.argmax(expected_s)) if expected_s.any() else len(currents)
    steps = np.arange(1, first + 1)
    closed = currents[0] * (1 - beta ** steps) / (1 - beta)
    closed_error = float(np.max(np.abs(potentials[:first] - closed))) if first else 0.0
    return {"steps": len(currents), "spikes": int(expected_s.sum()),
            "max_potential_error": error, "closed_form_error": closed_error,
            "same_spikes": same_spikes,
            "ok": same_spikes and error <= tolerance and closed_error <= tolerance}
