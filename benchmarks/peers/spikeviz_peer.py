"""spikeviz on the shared workload: training (batch 1, the method's only mode), the forward pass
alone, inference on one core and on all, start-up (numba cache warm or cold), how the training cost
grows with the hidden layer and the input rate, and one epoch on MNIST for accuracy.

Event-driven: no time step; refractory dynamic weight, WTA and membrane clipping as in the paper.
Encoding the input events is part of every spikeviz figure (the peers' conversion to dense bins
is part of theirs).  spikeviz is imported inside the functions so that start-up is timed from the
process start.
"""

import time

import numpy as np

from benchmarks.peers.measure import calibrated_count, peak_rss_mb, timed_count, timed_rate

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
    per_sample = events * sizes[1] + hidden_spikes * sizes[2]
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
    from spikeviz.engine.batch import available_cores, infer_counts, sample_rng
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

    network, encoder = trainer.network.copy(), trainer.task.encoder
    dynamics = make_dynamics(tau_mp_ms=workload.tau_mp_ms, t_ref_ms=workload.t_ref_ms)
    sim, images = Simulator(network), pool["train_images"]
    spikes, rng = [], np.random.default_rng(1)

    def forward():
        ev = encoder.encode(images[len(spikes) % len(images)], workload.train_ms, rng)
        sim.run_checked(ev.times_ms, ev.channels, workload.train_ms, trainer.kappas, dynamics)
        spikes.append(int(sim.counts(0).sum()))

    forward()
    spikes.clear()
    result = timed_rate(forward, 1, seconds)
    report["forward"] = [synaptic_row(result["samples_per_s"], events, np.mean(spikes), sizes,
                                      batch=1, seconds=result["seconds"])]

    infer_images = pool["infer_images"]
    infer_spikes = []
    for i in range(min(len(infer_images), 20)):  # hidden activity of a 1 s presentation
        ev = encoder.encode(infer_images[i], workload.infer_ms, sample_rng(2, i))
        sim.run_checked(ev.times_ms, ev.channels, workload.infer_ms, trainer.kappas, dynamics)
        infer_spikes.append(int(sim.counts(0).sum()))
    report["infer"] = []
    for workers in sorted({1, available_cores()}):
        def run(n, workers=workers):
            images_n = infer_images[np.arange(n) % len(infer_images)]
            infer_counts(network, images_n, encoder, duration_ms=workload.infer_ms,
                         kappas=trainer.kappas, dynamics=dynamics, seed=3, workers=workers)
        n = calibrated_count(run, 8 * workers, seconds / 3)
        result = timed_count(run, n)
        report["infer"].append(synaptic_row(
            result["samples_per_s"], pool["infer_events_per_sample"], np.mean(infer_spikes),
            sizes, batch=1, cores=workers, seconds=result["seconds"]))
    report["settings"] = {"dt_ms": None, "event_driven": True, "refractory": "dynamic weight",
                          "wta": list(workload.kappas), "optimizer": "adam"}
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report


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
        hidden_size = trainer.network.sizes[1]
        rate = trainer.config.rate_hz * workload.train_ms / 1000
        return dict(changes, samples_per_s=round(result["samples_per_s"], 1),
                    hidden_spikes_per_sample=round(hidden, 1),
                    synaptic_events_per_s=round(result["samples_per_s"]
                                                * (rate * hidden_size + hidden * 10)))

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
