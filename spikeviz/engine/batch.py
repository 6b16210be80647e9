"""Inference over many samples on every core.

Each sample draws its events from its own generator, seeded by (seed, sample index), so the
result does not depend on how many workers share the work.  The kernels release the GIL, so plain
threads run samples in parallel; each thread has its own simulator state and reads the shared,
unchanging weights (no threshold regularization during inference).
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from spikeviz.engine.network import Simulator, check_kappas

CHUNK = 32  # samples per task: large enough to hide the scheduling, small enough to balance


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sample_rng(seed, index):
    """The generator of sample ``index``: independent of the worker that runs it."""
    return np.random.default_rng([seed, index])


def infer_counts(network, images, encoder, *, duration_ms, kappas, dynamics, seed, workers=None,
                 on_chunk=None, closeness=None):
    """Output spike counts of every image, presented for ``duration_ms``.

    Parameters
    ----------
    network : Network
    images : (S, ...) array of images, one per sample
    encoder : PoissonEncoder
    duration_ms : float
    kappas, dynamics, seed, workers, on_chunk, closeness : as in :func:`infer_samples`

    Returns
    -------
    (S, N_out) int32 spike counts
    """
    def sample(i, rng):
        return encoder.encode(images[i], duration_ms, rng), float(duration_ms)

    return infer_samples(network, len(images), sample, kappas=kappas, dynamics=dynamics,
                         seed=seed, workers=workers, on_chunk=on_chunk, closeness=closeness)


def infer_samples(network, n_samples, sample, *, kappas, dynamics, seed, workers=None,
                  on_chunk=None, closeness=None):
    """Output spike counts of ``n_samples`` samples whose events ``sample(i, rng)`` makes.

    Parameters
    ----------
    network : Network
    n_samples : int
    sample : callable(i, rng) -> (Events, end_ms), thread-safe; ``rng`` is sample i's own
        generator (:func:`sample_rng`)
    kappas : sequence of float, one per layer
    dynamics : kernels.Dynamics; its rho is ignored (no threshold regularization here)
    seed : int
    workers : int, threads to use; all available cores by default
    on_chunk : callable(n_done), optional, called after each finished chunk (progress bars);
        an exception it raises stops the run after the chunks already started
    closeness : (n_samples, N_out) float array, optional, filled with each output neuron's
        V/Vth at the end of its sample: how close it was to its next spike (ties' tie-break)

    Returns
    -------
    (n_samples, N_out) int32 spike counts
    """
    kappas = check_kappas(kappas, len(network.weights))
    dynamics = dynamics._replace(rho=0.0)
    counts = np.zeros((n_samples, network.sizes[-1]), np.int32)
    chunks = [range(a, min(a + CHUNK, n_samples)) for a in range(0, n_samples, CHUNK)]
    # Validate once, in the caller's thread, with the first sample.
    if n_samples:
        events, end_ms = sample(0, sample_rng(seed, 0))
        Simulator(network).run(events, end_ms, kappas=kappas, dynamics=dynamics)

    def run_chunk(indices):
        sim = Simulator(network)
        for i in indices:
            events, end_ms = sample(i, sample_rng(seed, i))
            counts[i] = sim.run_checked(events.times_ms, events.channels, end_ms, kappas, dynamics)
            if closeness is not None:
                # V as of the layer's last update: the decay since is one factor for the whole
                # layer, so it ranks the neurons as they stand at the end of the presentation
                closeness[i] = sim.potentials(-1) / sim.thresholds(-1)
        return len(indices)

    with ThreadPoolExecutor(max_workers=workers or available_cores()) as pool:
        try:
            for n_done in pool.map(run_chunk, chunks):
                if on_chunk is not None:
                    on_chunk(n_done)
        except BaseException:
            # on_chunk may raise to stop (Ctrl-C): drop the chunks not started; only the ones
            # already running are waited for (a thread cannot be interrupted)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return counts
