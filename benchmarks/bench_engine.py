"""Forward pass of 784-800-10 on 1 s PI-MNIST presentations at 5,000 events/s (issue 2).

Measures, in one run on this machine: spikeviz on one core and on every core, the event encoder
alone, and a straightforward Numba event loop (``reference.py``) on one core; reports samples/s,
synaptic updates/s and the ratios to the reference (the figures that hold on a shared, noisy
machine).  Compilation is excluded (one warm-up sample each).

    python benchmarks/bench_engine.py [--samples 2000] [--data-dir ../shared/data/mnist]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from spikeviz.data import load_mnist
from spikeviz.encode import PoissonEncoder
from spikeviz.engine import init_network, make_dynamics
from spikeviz.engine.batch import available_cores, infer_counts, sample_rng

try:
    from benchmarks.reference import reference_sample
except ImportError:  # run as a script from benchmarks/
    from reference import reference_sample

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
KAPPAS = (-0.4, -1.0)
DURATION_MS = 1000.0


def measure(label, run, n):
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return {"what": label, "samples": n, "seconds": round(seconds, 3),
            "samples_per_s": round(n / seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--reference-samples", type=int, default=100)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    images = load_mnist(args.data_dir, download=False).test_images[: args.samples]
    network = init_network((784, 800, 10), np.random.default_rng(0), alpha=3.0)
    encoder = PoissonEncoder(784, rate_hz=5000.0)
    dynamics = make_dynamics(tau_mp_ms=20.0, t_ref_ms=1.0)
    cores = available_cores()

    def spikeviz(workers, n, closeness=False):
        # closeness: also read each output neuron's final V/Vth, as the trainer's tests do
        out = np.zeros((n, 10), np.float32) if closeness else None
        return lambda: infer_counts(network, images[:n], encoder, duration_ms=DURATION_MS,
                                    kappas=KAPPAS, dynamics=dynamics, seed=1, workers=workers,
                                    closeness=out)

    def encode_only(n):
        return lambda: [encoder.encode(images[i], DURATION_MS, sample_rng(1, i)) for i in range(n)]

    w_h = network.weights[0].T.astype(np.float64).copy()
    w_o = network.weights[1].T.astype(np.float64).copy()
    th_h = network.thresholds[0].astype(np.float64)
    th_o = network.thresholds[1].astype(np.float64)
    ref_events = [encoder.encode(images[i], DURATION_MS, sample_rng(1, i))
                  for i in range(args.reference_samples)]

    def reference(n):
        def run():
            for ev in ref_events[:n]:
                reference_sample(ev.times_ms, ev.channels, w_h, th_h, w_o, th_o, *KAPPAS, 20.0, 1.0)
        return run

    # Warm up (compile) everything first.
    spikeviz(1, 4)()
    encode_only(4)()
    reference(1)()

    results = [
        measure("reference Numba loop, 1 core (events pre-encoded)", reference(args.reference_samples),
                args.reference_samples),
        measure("spikeviz, 1 core (encoding included)", spikeviz(1, args.samples // 2),
                args.samples // 2),
        measure(f"spikeviz, {cores} cores (encoding included)", spikeviz(cores, args.samples),
                args.samples),
        measure(f"spikeviz, {cores} cores, reading V/Vth for the tie-break",
                spikeviz(cores, args.samples, closeness=True), args.samples),
        measure("encoder alone, 1 core", encode_only(args.samples // 2), args.samples // 2),
    ]
    counts = infer_counts(network, images[:50], encoder, duration_ms=DURATION_MS, kappas=KAPPAS,
                          dynamics=dynamics, seed=1)
    events = np.mean([len(e.times_ms) for e in ref_events])
    reference_rate = results[0]["samples_per_s"]
    for r in results:
        r["ratio_to_reference"] = round(r["samples_per_s"] / reference_rate, 2)
        if not r["what"].startswith("encoder"):  # input events x 800 hidden neurons
            r["synaptic_updates_per_s"] = f"{r['samples_per_s'] * events * 800:.3g}"
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {cores} cores, {platform.python_version()}",
        "events_per_sample": round(events),
        "output_spikes_per_sample": float(counts.sum(1).mean()),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
