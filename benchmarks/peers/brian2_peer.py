"""Brian2 (forward pass only: it has no gradient-based training): the paper's 784-800-10 with
refractory dynamic weight, WTA and clipping written as Brian2 equations, time-stepped at dt = 1 ms
with its Cython code generation.

Brian2 2.9.0 does not import with NumPy 2.4 (it wraps ``ndarray.ptp``, which NumPy 2.4 removed;
fixed upstream in brian-team/brian2#1705, not yet released), so the harness can run this module
in an interpreter of its own (``--brian2-python``) with NumPy < 2.4.  This module needs only
NumPy and Brian2.

What differs from spikeviz: spikes cross a layer one step (1 ms) later, since Brian2 tests
thresholds before delivering the step's synaptic input; events within one step are delivered
together, and the WTA candidates of one step all fire (spikeviz: in order of V / Vth, each
inhibiting the rest at once).  Samples run back to back in one simulation, each from rest.
"""

import tempfile
import time

import numpy as np

from benchmarks.peers.measure import peak_rss_mb, slope_rate, timed_count
from benchmarks.peers.workload import (
    init_peer_weights, mean_events, n_steps, split_repeats, synaptic_events,
)

NAME = "Brian2"
LIMITS = {
    "refractory": "modelled: the input weight is scaled by clip(((t - lastspike) / T_ref)^2, 0, 1)",
    "wta": "modelled with lateral synapses (kappa * Vth of the target), delivered at the step "
           "of the spike; all candidates of one step fire",
    "event_driven": "partly: synapses are processed only for spikes, but every neuron's "
                    "state is updated every step",
    "training": "none (Brian2 has no gradient-based learning): forward pass only",
}
# Every update of V is followed by the paper's clipping at -Vth (and at +Vth after the reset).
INPUT_ON_PRE = ("v_post = clip(v_post + w * clip(((t - lastspike_post) / t_ref) ** 2, 0, 1), "
                "-vth_post, 1e9)")
LATERAL_ON_PRE = "v_post = clip(v_post + kappa * vth_post, -vth_post, 1e9)"


def settings(workload):
    return {"dt_ms": workload.dt_ms, "steps_infer": n_steps(workload.infer_ms, workload.dt_ms),
            "threshold": 1.0, "reset": "subtract, then clip at +Vth", "codegen": "cython",
            "input_scale": 1.0}


def back_to_back(events, duration_ms, workload):
    """The samples' events one presentation after the other: (time steps, generator indices,
    copies of the input layer needed, see ``split_repeats``)."""
    steps = n_steps(duration_ms, workload.dt_ms)
    bins, indices, copies = [], [], 1
    for k, (times_ms, channels) in enumerate(events):
        sample_bins, sample_indices, sample_copies = split_repeats(
            times_ms, channels, duration_ms, workload.dt_ms, workload.sizes[0])
        bins.append(sample_bins + k * steps)
        indices.append(sample_indices)
        copies = max(copies, sample_copies)
    return np.concatenate(bins), np.concatenate(indices), copies


def build(brian2, workload, events, duration_ms, seed=0):
    """A Brian2 network presenting ``events`` one after the other, each for ``duration_ms``."""
    b = brian2
    dt = workload.dt_ms * b.ms
    steps = n_steps(duration_ms, workload.dt_ms)
    bins, indices, copies = back_to_back(events, duration_ms, workload)
    source = b.SpikeGeneratorGroup(workload.sizes[0] * copies, indices, bins * dt, dt=dt)
    layers, objects = [], [source]
    weights = init_peer_weights(workload, np.random.default_rng(seed))
    tau = workload.tau_mp_ms * b.ms
    for layer, (size, w, kappa) in enumerate(zip(workload.sizes[1:], weights, workload.kappas)):
        group = b.NeuronGroup(size, "dv/dt = -v / tau : 1\nvth : 1", threshold="v >= vth",
                              reset="v = clip(v - vth, -vth, vth)", refractory=0 * b.ms,
                              method="exact", dt=dt, namespace={"tau": tau})
        group.vth = 1.0
        group.run_regularly("v = 0\nlastspike = -1e9 * second", dt=steps * dt, when="start")
        pre = source if layer == 0 else layers[-1]
        repeat = copies if layer == 0 else 1
        synapses = b.Synapses(pre, group, "w : 1", on_pre=INPUT_ON_PRE, dt=dt,
                              namespace={"t_ref": workload.t_ref_ms * b.ms})
        i, j = np.meshgrid(np.arange(w.shape[1] * repeat), np.arange(size), indexing="ij")
        synapses.connect(i=i.ravel(), j=j.ravel())
        synapses.w = np.tile(w.T, (repeat, 1)).ravel()
        lateral = b.Synapses(group, group, on_pre=LATERAL_ON_PRE, dt=dt,
                             namespace={"kappa": kappa})
        lateral.connect(condition="i != j")
        layers.append(group)
        objects += [group, synapses, lateral]
    hidden_monitor = b.SpikeMonitor(layers[0], record=False)
    out_monitor = b.SpikeMonitor(layers[-1])
    network = b.Network(*objects, hidden_monitor, out_monitor)
    return network, hidden_monitor, steps * dt


def forward(workload, events, duration_ms, seconds, cycles=2):
    """Samples/s of the forward pass on ``events`` (presented ``cycles`` times at most), the
    fixed cost of each ``network.run`` call, and the seconds from here to the end of the first
    sample (code generation, compilation).

    Each call to ``network.run`` has a fixed cost before its first step, so the rate is the slope
    between a short and a long run (``slope_rate``), and that cost is reported on its own."""
    import brian2

    start = time.time()
    brian2.prefs.codegen.target = "cython"
    network, hidden_monitor, presentation = build(brian2, workload, events * cycles, duration_ms)
    network.run(presentation)  # generates code, compiles what the Cython cache lacks
    startup_s = time.time() - start
    done = [1]

    def run(n):
        network.run(n * presentation)
        done[0] += n

    # a probe long enough that the fixed cost does not dominate the first estimate
    probe_n = max(1, min(20, (len(events) * cycles - done[0]) // 4))
    probe = timed_count(run, probe_n)
    spikes_before, samples_before = hidden_monitor.num_spikes, done[0]
    result = slope_rate(run, probe["seconds"] / probe_n, seconds,
                        len(events) * cycles - done[0])
    hidden = (hidden_monitor.num_spikes - spikes_before) / (done[0] - samples_before)
    return result, float(hidden), startup_s


def speed(workload, pool, seconds, process_start, cold=False):
    """Forward pass and inference rates; ``cold``: compile into an empty Cython cache."""
    import brian2

    import_s = time.time() - process_start
    if cold:
        brian2.prefs.codegen.runtime.cython.cache_dir = tempfile.mkdtemp(prefix="brian2-cache-")
    report = {"version": brian2.__version__, "numpy": np.__version__, "threads": 1,
              "cold_cache": cold,
              "settings": settings(workload)}
    sizes = workload.sizes
    for key, events, duration in (("forward", pool["train_events"], workload.train_ms),
                                  ("infer", pool["infer_events"], workload.infer_ms)):
        result, hidden, startup_s = forward(workload, events, duration, seconds)
        per_sample = synaptic_events(mean_events(events), hidden, sizes)
        report[key] = [{"batch": 1, "samples_per_s": round(result["samples_per_s"], 2),
                        "synaptic_events_per_s": round(result["samples_per_s"] * per_sample),
                        "hidden_spikes_per_sample": round(hidden, 1),
                        "run_overhead_s": result["overhead_s"],
                        "samples": result["samples"], "seconds": result["seconds"]}]
        if key == "forward":
            report["startup"] = {"import_s": round(import_s, 2),
                                 "to_first_sample_s": round(import_s + startup_s, 2)}
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report
