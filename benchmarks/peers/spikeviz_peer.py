"""spikeviz on the shared workload: training (batch 1, the method's only mode), the forward pass
alone, inference on one core and on all, start-up (numba cache warm or cold), how the training cost
grows with the hidden layer and the input rate, and one epoch on MNIST for accuracy.

Event-driven: no time step; refractory dynamic weight, WTA and membrane clipping as in the paper.
Training encodes its own events (the same images, encoder and rate as the pool's; encoding is
timed with it, as the peers' conversion to dense bins is with theirs).  The forward pass and
inference run the pool's events, the very spikes the peers get, through the peers' initial
weights (``peer_network``), so that activity, and with it cost, starts from the same network.
spikeviz is imported inside the functions so that start-up is timed from the
process start.
"""

import time

import numpy as np

from benchmarks.peers.measure import calibrated_count, peak_rss_mb, timed_count, timed_rate
from benchmarks.peers.workload import init_peer_weights, synaptic_events

NAME = "spikeviz"
HIDDEN_SIZES = (100, 200, 400, 800, 1600, 3000)
RATES_HZ = (1000.0, 2500.0, 5000.0, 10000.0, 20000.0)


def config(workload, **changes):
    from spikeviz.config import Config

    values = dict(hidden=list(workload.sizes[1:-1]), tau_mp_ms=workload.tau_mp_ms,
                  t_ref_ms=workload.t_ref_ms, rate_hz=workload.rate_hz, alpha=workload.alpha,
                  train_duration_ms=workload.train_ms, test_duration_ms=workload.infer_ms,
                  kappa_hidden=workload.kappas[0], kappa_output=workload.kappas[-1])
    values.update(changes)
    return Config(**values)


def as_mnist(images, labels, test_images, test_labels):
    from spikeviz.data import MNIST

    return MNIST(images, labels, test_images, test_labels, origin="benchmarks.peers workload")


def synaptic_row(samples_per_s, events, hidden_spikes, sizes, **extra):
    per_sample = synaptic_events(events, hidden_spikes, sizes)
    return dict(extra, samples_per_s=round(samples_per_s, 2),
                synaptic_events_per_s=round(samples_per_s * per_sample),
                hidden_spikes_per_sample=round(hidden_spikes, 1))


def train_window(trainer, seconds, min_steps=2):
    """Training samples/s over ``seconds`` and the hidden spikes per sample meanwhile."""
    hidden = trainer.sim.counts(0)
    spikes = []

    def step():
        if trainer.position >= trainer.n_train:  # the pool is short: start another epoch
            trainer.finish_epoch(evaluate=False)
        trainer.train_sample()
        spikes.append(int(hidden.sum()))

    result = timed_rate(step, 1, seconds, min_steps)
    return result, float(np.mean(spikes))


def speed(workload, pool, seconds, process_start, cold=False):
    """Start-up, training, forward pass and inference rates on the workload's images.

    ``cold``: the parent gave this process an empty ``NUMBA_CACHE_DIR`` (start-up compiles)."""
    from spikeviz.engine import Simulator, make_dynamics
    from spikeviz.train.trainer import Trainer

    import_s = time.time() - process_start
    data = as_mnist(pool["train_images"], pool["train_labels"], pool["infer_images"],
                    pool["infer_labels"])
    trainer = Trainer(config(workload), data)
    trainer.train_sample()
    startup = {"import_s": round(import_s, 2),
               "to_first_sample_s": round(time.time() - process_start, 2)}
    events = pool["train_events_per_sample"]
    sizes = workload.sizes
    result, hidden = train_window(trainer, seconds)
    report = {"startup": startup, "version": _version(), "threads": 1,
              "cold_cache": cold,
              "train": [synaptic_row(result["samples_per_s"], events, hidden, sizes, batch=1,
                                     seconds=result["seconds"])]}

    network, kappas = peer_network(workload), trainer.kappas
    dynamics = make_dynamics(tau_mp_ms=workload.tau_mp_ms, t_ref_ms=workload.t_ref_ms)
    sim, train_events = Simulator(network), pool["train_events"]
    spikes = []

    def forward():
        times, channels = train_events[len(spikes) % len(train_events)]
        sim.run_checked(times, channels, workload.train_ms, kappas, dynamics)
        spikes.append(int(sim.counts(0).sum()))

    forward()
    spikes.clear()
    result = timed_rate(forward, 1, seconds)
    report["forward"] = [synaptic_row(result["samples_per_s"], events, np.mean(spikes), sizes,
                                      batch=1, seconds=result["seconds"])]
    report["infer"] = infer_rows(workload, pool, network, kappas, dynamics, seconds)
    report["settings"] = {"dt_ms": None, "event_driven": True, "refractory": "dynamic weight",
                          "wta": list(workload.kappas), "optimizer": "adam",
                          "forward_and_infer": "the peers' initial weights and input events"}
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report


def peer_network(workload, seed=0):
    """The network the peers start from (``init_peer_weights``, the same seed) in spikeviz's
    units: weights and thresholds times the initial threshold alpha sqrt(3 / fan-in)."""
    from spikeviz.engine.network import Network

    weights, thresholds, floors = [], [], []
    for w in init_peer_weights(workload, np.random.default_rng(seed)):
        vth = workload.alpha * np.sqrt(3.0 / w.shape[1])
        weights.append(w.T * vth)
        thresholds.append(np.full(w.shape[0], vth))
        floors.append(0.5 * vth)
    return Network(weights, thresholds, floors)


def infer_rows(workload, pool, network, kappas, dynamics, seconds):
    """1 s inference on the pool's test events, on one core and on all: a warm-up call, then
    a window of about ``seconds`` / 2 for each."""
    from spikeviz.encode import Events
    from spikeviz.engine import Simulator
    from spikeviz.engine.batch import available_cores, infer_samples

    events = pool["infer_events"]
    sim, spikes = Simulator(network), []
    for times, channels in events[:20]:  # hidden activity of a 1 s presentation
        sim.run_checked(times, channels, workload.infer_ms, kappas, dynamics)
        spikes.append(int(sim.counts(0).sum()))

    def sample(i, rng):
        return Events(*events[i % len(events)]), float(workload.infer_ms)

    rows = []
    for workers in sorted({1, available_cores()}):
        def run(n, workers=workers):
            infer_samples(network, n, sample, kappas=kappas, dynamics=dynamics, seed=3,
                          workers=workers)

        run(2 * workers)  # warm-up: threads, first calls
        n = calibrated_count(run, 8 * workers, seconds / 2)
        result = timed_count(run, n)
        rows.append(synaptic_row(result["samples_per_s"], pool["infer_events_per_sample"],
                                 np.mean(spikes), workload.sizes, batch=1, cores=workers,
                                 seconds=result["seconds"]))
    return rows


def scaling(workload, pool, seconds, warmup_samples=200):
    """Training samples/s against the hidden layer's size and against the input rate."""
    from spikeviz.train.trainer import DivergenceError, Trainer

    data = as_mnist(pool["train_images"], pool["train_labels"], pool["infer_images"],
                    pool["infer_labels"])

    def measure(**changes):
        trainer = Trainer(config(workload, **changes), data)
        try:
            train_window(trainer, 0.0, min_steps=warmup_samples)
            result, hidden = train_window(trainer, seconds)
        except DivergenceError as error:  # e.g. an output layer silent at a low input rate
            return dict(changes, error=str(error))
        rate = trainer.config.rate_hz * workload.train_ms / 1000
        per_sample = synaptic_events(rate, hidden, trainer.network.sizes)
        return dict(changes, samples_per_s=round(result["samples_per_s"], 1),
                    hidden_spikes_per_sample=round(hidden, 1),
                    synaptic_events_per_s=round(result["samples_per_s"] * per_sample))

    return {"hidden": [measure(hidden=[size]) for size in HIDDEN_SIZES],
            "rate_hz": [measure(rate_hz=rate) for rate in RATES_HZ]}


def accuracy(workload, data_dir, train_samples, test_samples):
    """One epoch of MNIST (ADAM, the default), then test accuracy with 1 s presentations."""
    from spikeviz.data import load_mnist
    from spikeviz.train.trainer import Trainer

    data = load_mnist(data_dir, download=False)
    trainer = Trainer(config(workload, train_samples=train_samples), data)
    start = time.perf_counter()
    trainer.train_epoch()
    metrics = trainer.finish_epoch(evaluate=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    test = trainer.evaluate(n_samples=test_samples)
    return {"train_samples": trainer.n_train, "train_s": round(train_s, 1),
            "train_accuracy": round(metrics["train_accuracy"], 4),
            "test_samples": test["test_samples"], "test_s": round(time.perf_counter() - start, 1),
            "test_accuracy": round(test["test_accuracy"], 4), "batch": 1,
            "test_presentation_ms": workload.infer_ms, "peak_rss_mb": round(peak_rss_mb(), 1)}


def _version():
    import spikeviz

    return spikeviz.__version__
