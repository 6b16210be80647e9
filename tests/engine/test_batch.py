"""Parallel inference: the same counts as a serial run, whatever the number of workers."""

import numpy as np
import pytest

from spikeviz.data import load_mnist
from spikeviz.encode import PoissonEncoder
from spikeviz.engine import Simulator, init_network, make_dynamics
from spikeviz.engine import batch
from spikeviz.engine.batch import infer_counts, sample_rng
from spikeviz.errors import ConfigError

DURATION_MS = 100.0
PAPER_KAPPAS = (-0.4, -1.0)


@pytest.fixture(scope="module")
def images():
    """40 bundled MNIST test digits, (40, 28, 28) uint8."""
    return load_mnist(bundled=True).test_images[:40]


@pytest.fixture
def network():
    return init_network((784, 60, 10), np.random.default_rng(2016), alpha=3.0)


@pytest.fixture(scope="module")
def encoder():
    return PoissonEncoder(784)


def serial_counts(network, images, encoder, kappas, dynamics, seed):
    """The reference: one simulator, one sample after the other, each from sample_rng(seed, i)."""
    sim = Simulator(network)
    counts = []
    for i, image in enumerate(images):
        events = encoder.encode(image, DURATION_MS, sample_rng(seed, i))
        counts.append(sim.run(events, DURATION_MS, kappas=kappas, dynamics=dynamics).copy())
    return np.array(counts)


@pytest.mark.parametrize("kappas", [PAPER_KAPPAS, (0.0, 0.0), (-1.0, 0.0)])
def test_counts_equal_a_serial_run_sample_by_sample(network, images, encoder, kappas):
    dyn = make_dynamics()
    counts = infer_counts(network, images, encoder, duration_ms=DURATION_MS, kappas=kappas,
                          dynamics=dyn, seed=5, workers=3)
    expected = serial_counts(network, images, encoder, kappas, dyn, seed=5)
    assert counts.dtype == np.int32 and counts.shape == (len(images), 10)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() > 100 and (counts.sum(axis=1) > 0).sum() > 30  # real activity compared


def test_closeness_is_each_output_neurons_final_v_over_vth(network, images, encoder):
    dyn = make_dynamics()
    closeness = np.full((len(images), 10), np.nan, np.float32)
    counts = infer_counts(network, images, encoder, duration_ms=DURATION_MS,
                          kappas=PAPER_KAPPAS, dynamics=dyn, seed=5, workers=2,
                          closeness=closeness)
    sim = Simulator(network)
    for i, image in enumerate(images):
        events = encoder.encode(image, DURATION_MS, sample_rng(5, i))
        np.testing.assert_array_equal(
            sim.run(events, DURATION_MS, kappas=PAPER_KAPPAS, dynamics=dyn), counts[i])
        np.testing.assert_allclose(closeness[i], sim.potentials(-1) / sim.thresholds(-1),
                                   rtol=1e-6)
    # clipping keeps V in [-Vth, Vth]; the output WTA pushes the losers to its floor
    assert np.all(np.abs(closeness) <= 1 + 1e-6) and np.isclose(closeness, -1).any()
    assert len(np.unique(closeness)) > 50  # not a constant: real potentials were read


@pytest.mark.parametrize("chunk", [batch.CHUNK, 3])
def test_counts_do_not_depend_on_the_number_of_workers(network, images, encoder, monkeypatch,
                                                        chunk):
    monkeypatch.setattr(batch, "CHUNK", chunk)  # small chunks: every worker gets several
    results = [
        infer_counts(network, images, encoder, duration_ms=DURATION_MS, kappas=PAPER_KAPPAS,
                     dynamics=make_dynamics(), seed=11, workers=workers)
        for workers in (1, 2, 3, None)
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_same_seed_reproduces_different_seed_differs(network, images, encoder):
    def run(seed):
        return infer_counts(network, images, encoder, duration_ms=DURATION_MS,
                            kappas=PAPER_KAPPAS, dynamics=make_dynamics(), seed=seed, workers=2)

    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_sample_generators_are_independent_of_order():
    """sample_rng(seed, i) is a function of (seed, i) only: drawing i before j changes nothing."""
    a = [sample_rng(3, i).random(4) for i in range(5)]
    b = [sample_rng(3, i).random(4) for i in reversed(range(5))][::-1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(sample_rng(3, 0).random(4), sample_rng(4, 0).random(4))


@pytest.mark.parametrize("chunk, workers", [(batch.CHUNK, 2), (7, 3), (1, 1), (64, 2)])
def test_on_chunk_reports_chunk_sizes_that_sum_to_the_samples(network, images, encoder,
                                                              monkeypatch, chunk, workers):
    monkeypatch.setattr(batch, "CHUNK", chunk)
    sizes = []
    infer_counts(network, images, encoder, duration_ms=DURATION_MS, kappas=PAPER_KAPPAS,
                 dynamics=make_dynamics(), seed=1, workers=workers, on_chunk=sizes.append)
    n = len(images)
    assert sum(sizes) == n
    assert len(sizes) == -(-n // chunk)
    assert all(0 < size <= chunk for size in sizes)


def test_no_images_gives_an_empty_result(network, encoder):
    calls = []
    counts = infer_counts(network, np.zeros((0, 28, 28), np.uint8), encoder,
                          duration_ms=DURATION_MS, kappas=PAPER_KAPPAS, dynamics=make_dynamics(),
                          seed=0, on_chunk=calls.append)
    assert counts.shape == (0, 10) and counts.dtype == np.int32
    assert calls == []


def test_threshold_regularization_is_ignored(network, images, encoder):
    thresholds = [th.copy() for th in network.thresholds]
    weights = [w.copy() for w in network.weights]
    trained = make_dynamics(rho=1e-3)
    counts = infer_counts(network, images[:12], encoder, duration_ms=DURATION_MS,
                          kappas=PAPER_KAPPAS, dynamics=trained, seed=4, workers=2)
    for before, after in zip(thresholds, network.thresholds):
        np.testing.assert_array_equal(after, before)
    for before, after in zip(weights, network.weights):
        np.testing.assert_array_equal(after, before)
    # The same counts as without regularization ...
    plain = infer_counts(network, images[:12], encoder, duration_ms=DURATION_MS,
                         kappas=PAPER_KAPPAS, dynamics=make_dynamics(rho=0.0), seed=4, workers=2)
    np.testing.assert_array_equal(counts, plain)
    # ... while a training-mode run of the same samples would have moved the thresholds.
    training_copy = network.copy()
    serial_counts(training_copy, images[:12], encoder, PAPER_KAPPAS, trained, seed=4)
    assert not np.array_equal(training_copy.thresholds[0], network.thresholds[0])


@pytest.mark.parametrize(
    "kappas, message",
    [
        ((-0.4,), "need one lateral inhibition strength per layer"),
        ((-0.4, -1.0, 0.0), "need one lateral inhibition strength per layer"),
        ((0.4, -1.0), "out of range"),
        ((-0.4, -1.5), "out of range"),
        ((float("nan"), -1.0), "out of range"),
    ],
)
def test_bad_kappas_raise_before_any_work(network, images, kappas, message):
    class SpyEncoder(PoissonEncoder):
        calls = 0

        def encode(self, image, duration_ms, rng):
            SpyEncoder.calls += 1
            return super().encode(image, duration_ms, rng)

    chunks = []
    with pytest.raises(ConfigError, match=message):
        infer_counts(network, images, SpyEncoder(784), duration_ms=DURATION_MS, kappas=kappas,
                     dynamics=make_dynamics(), seed=0, workers=2, on_chunk=chunks.append)
    assert SpyEncoder.calls == 0 and chunks == []
