"""The Poisson encoder against its naive twin, its event-stream contract and Poisson statistics."""

import math

import numpy as np
import pytest

from spikeviz.data import load_mnist
from spikeviz.encode import PoissonEncoder
from spikeviz.errors import ConfigError
from tests import naive

N_PIXELS = 784


@pytest.fixture(scope="module")
def digits():
    """The bundled MNIST test images, (n, 28, 28) uint8."""
    return load_mnist(bundled=True).test_images


def sample_images(digits):
    """Images for the twin comparison: a real digit, random intensities, a single lit pixel."""
    rng = np.random.default_rng(11)
    one_lit = np.zeros((28, 28), np.uint8)
    one_lit[13, 17] = 200
    return {
        "digit": digits[0],
        "random_float64": rng.random(N_PIXELS),
        "random_float32": rng.random((28, 28)).astype(np.float32),
        "one_lit_pixel": one_lit,
    }


# ---------------------------------------------------------------------------------------------
# Kernel vs naive twin


@pytest.mark.parametrize("name", ["digit", "random_float64", "random_float32", "one_lit_pixel"])
@pytest.mark.parametrize("permuted", [False, True])
@pytest.mark.parametrize("duration_ms", [0.5, 50.0, 1000.0])
@pytest.mark.parametrize("rate_hz", [5000.0, 700.0])
def test_kernel_matches_naive_twin(digits, name, permuted, duration_ms, rate_hz):
    image = sample_images(digits)[name]
    seed = hash((name, permuted, duration_ms, rate_hz)) % 2**32
    permutation = np.random.default_rng(seed).permutation(N_PIXELS) if permuted else None
    encoder = PoissonEncoder(N_PIXELS, rate_hz=rate_hz, permutation=permutation)
    rng_kernel, rng_twin = np.random.default_rng(seed), np.random.default_rng(seed)

    events = encoder.encode(image, duration_ms, rng_kernel)
    times, channels = naive.poisson_events(image, duration_ms, rng_twin, rate_hz, permutation)

    np.testing.assert_array_equal(events.channels, channels)
    np.testing.assert_array_equal(events.times_ms, times)
    assert events.times_ms.dtype == times.dtype == np.float64
    # Both consumed exactly the same draws: the next sample starts from the same state.
    assert rng_kernel.bit_generator.state == rng_twin.bit_generator.state
    if duration_ms >= 50.0:
        assert events.times_ms.size > 10  # the comparison covered real events


@pytest.mark.parametrize("duration_ms", [50.0, 1000.0])
def test_kernel_times_match_naive_twin_bit_for_bit(digits, duration_ms):
    events = PoissonEncoder(N_PIXELS).encode(digits[0], duration_ms, np.random.default_rng(8))
    times, _ = naive.poisson_events(digits[0], duration_ms, np.random.default_rng(8))
    np.testing.assert_array_equal(events.times_ms, times)


def test_single_pixel_encoder_matches_twin():
    encoder = PoissonEncoder(1, rate_hz=2000.0)
    events = encoder.encode(np.array([7.0]), 20.0, np.random.default_rng(5))
    times, channels = naive.poisson_events([7.0], 20.0, np.random.default_rng(5), 2000.0)
    np.testing.assert_array_equal(events.times_ms, times)
    np.testing.assert_array_equal(events.channels, channels)
    assert events.channels.size > 10 and np.all(events.channels == 0)


def test_one_lit_pixel_fires_only_on_its_channel(digits):
    image = sample_images(digits)["one_lit_pixel"]
    pixel = int(np.flatnonzero(image.reshape(-1))[0])
    permutation = np.random.default_rng(2).permutation(N_PIXELS)
    for perm, channel in ((None, pixel), (permutation, permutation[pixel])):
        events = PoissonEncoder(N_PIXELS, permutation=perm).encode(
            image, 100.0, np.random.default_rng(3)
        )
        assert events.channels.size > 300
        assert np.all(events.channels == channel)


# ---------------------------------------------------------------------------------------------
# Event-stream contract


@pytest.mark.parametrize("duration_ms", [0.1, 1.0, 50.0, 1000.0])
@pytest.mark.parametrize("permuted", [False, True])
def test_event_stream_contract(digits, duration_ms, permuted):
    permutation = np.random.default_rng(4).permutation(N_PIXELS) if permuted else None
    encoder = PoissonEncoder(N_PIXELS, permutation=permutation)
    for seed in range(5):
        events = encoder.encode(digits[seed], duration_ms, np.random.default_rng(seed))
        times, channels = events.times_ms, events.channels
        assert times.dtype == np.float64 and channels.dtype == np.int32
        assert times.ndim == 1 and times.shape == channels.shape
        assert np.all(np.diff(times) >= 0)
        if times.size:
            assert times[0] >= 0.0 and times[-1] <= duration_ms
            assert channels.min() >= 0 and channels.max() < N_PIXELS


def test_same_seed_same_events_different_seed_different_events(digits):
    encoder = PoissonEncoder(N_PIXELS)
    first = encoder.encode(digits[1], 50.0, np.random.default_rng(123))
    again = encoder.encode(digits[1], 50.0, np.random.default_rng(123))
    other = encoder.encode(digits[1], 50.0, np.random.default_rng(124))
    np.testing.assert_array_equal(first.times_ms, again.times_ms)
    np.testing.assert_array_equal(first.channels, again.channels)
    assert first.times_ms.size > 100
    assert first.times_ms.shape != other.times_ms.shape or not np.array_equal(
        first.times_ms, other.times_ms
    )
    # Drawing again from the same generator continues the stream: a new presentation.
    rng = np.random.default_rng(123)
    encoder.encode(digits[1], 50.0, rng)
    second = encoder.encode(digits[1], 50.0, rng)
    assert second.times_ms.shape != first.times_ms.shape or not np.array_equal(
        second.times_ms, first.times_ms
    )


def test_encoding_leaves_the_image_untouched(digits):
    image = digits[2].copy()
    PoissonEncoder(N_PIXELS).encode(image, 50.0, np.random.default_rng(0))
    np.testing.assert_array_equal(image, digits[2])


# ---------------------------------------------------------------------------------------------
# Poisson statistics (fixed seeds: deterministic, tolerances of several standard errors)


def test_event_count_is_poisson_with_mean_rate_times_duration(digits):
    rate_hz, duration_ms, draws = 5000.0, 10.0, 2000
    encoder = PoissonEncoder(N_PIXELS, rate_hz=rate_hz)
    rng = np.random.default_rng(20)
    counts = np.array([encoder.encode(digits[3], duration_ms, rng).times_ms.size
                       for _ in range(draws)])
    mean = rate_hz * duration_ms / 1000.0  # 50 events
    assert counts.mean() == pytest.approx(mean, abs=4 * math.sqrt(mean / draws))
    # Poisson: variance = mean; the sample variance has variance ~ (mu + 2 mu^2) / n.
    assert counts.var(ddof=1) == pytest.approx(mean, abs=4 * math.sqrt((mean + 2 * mean**2) / draws))


def test_channel_frequencies_are_proportional_to_intensity():
    # Zero pixels at both ends and in the middle never fire; the others split 1:3.
    image = np.array([0.0, 1.0, 0.0, 3.0, 0.0])
    encoder = PoissonEncoder(image.size, rate_hz=5000.0)
    rng = np.random.default_rng(21)
    channels = np.concatenate([encoder.encode(image, 1000.0, rng).channels for _ in range(10)])
    frequencies = np.bincount(channels, minlength=image.size) / channels.size
    assert channels.size > 45_000
    assert frequencies[[0, 2, 4]].tolist() == [0.0, 0.0, 0.0]
    standard_error = math.sqrt(0.25 * 0.75 / channels.size)
    assert frequencies[1] == pytest.approx(0.25, abs=4 * standard_error)
    assert frequencies[3] == pytest.approx(0.75, abs=4 * standard_error)


def test_pixel_counts_on_a_real_digit_follow_intensity(digits):
    """Chi-square of per-pixel counts against rate * intensity / total: about its degrees of
    freedom; zero pixels never fire."""
    image = digits[4].reshape(-1).astype(np.float64)
    encoder = PoissonEncoder(N_PIXELS)
    rng = np.random.default_rng(22)
    draws, duration_ms = 20, 1000.0
    counts = np.zeros(N_PIXELS)
    for _ in range(draws):
        counts += np.bincount(encoder.encode(image, duration_ms, rng).channels, minlength=N_PIXELS)
    lit = image > 0
    assert counts[~lit].sum() == 0
    expected = encoder.rate_hz * duration_ms / 1000.0 * draws * image[lit] / image.sum()
    chi2 = np.sum((counts[lit] - expected) ** 2 / expected)
    dof = lit.sum()  # Poisson counts, total not fixed
    assert abs(chi2 - dof) < 5 * math.sqrt(2 * dof)


def test_inter_event_intervals_are_exponential(digits):
    rate_hz, duration_ms = 5000.0, 1000.0
    encoder = PoissonEncoder(N_PIXELS, rate_hz=rate_hz)
    rng = np.random.default_rng(23)
    intervals = np.concatenate(
        [np.diff(encoder.encode(digits[5], duration_ms, rng).times_ms) for _ in range(4)]
    )
    n = intervals.size
    mean_ms = 1000.0 / rate_hz
    assert intervals.mean() == pytest.approx(mean_ms, rel=4 / math.sqrt(n))
    cv = intervals.std() / intervals.mean()
    assert cv == pytest.approx(1.0, abs=0.05)
    # Survival function exp(-t / mean) at one and two means.
    for k in (1, 2):
        p = math.exp(-k)
        assert np.mean(intervals > k * mean_ms) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))


def test_times_are_uniform_over_the_presentation(digits):
    encoder = PoissonEncoder(N_PIXELS)
    rng = np.random.default_rng(24)
    times = np.concatenate([encoder.encode(digits[6], 40.0, rng).times_ms for _ in range(200)])
    quarters = np.bincount((times // 10.0).astype(int).clip(0, 3), minlength=4) / times.size
    np.testing.assert_allclose(quarters, 0.25, atol=4 * math.sqrt(0.25 * 0.75 / times.size))


def test_single_pixel_stream_is_poisson_at_its_share_of_the_rate():
    """Thinning: each pixel's own stream is Poisson at rate * intensity / total."""
    image = np.array([1.0, 3.0])
    encoder = PoissonEncoder(2, rate_hz=4000.0)
    events = encoder.encode(image, 1000.0, np.random.default_rng(25))
    own = np.diff(events.times_ms[events.channels == 0])
    assert own.mean() == pytest.approx(1.0, rel=4 / math.sqrt(own.size))  # 1000 Hz: 1 ms
    assert own.std() / own.mean() == pytest.approx(1.0, abs=0.1)


def test_per_pixel_rate_of_a_real_digit_is_total_rate_over_lit_pixels(digits):
    """The paper's 'about 43 events/s per non-zero pixel' is 5000 Hz over ~116 lit pixels."""
    lit_pixels = (digits > 0).sum(axis=(1, 2))
    index = int(np.flatnonzero(lit_pixels == 116)[0])  # a digit of the paper's size
    encoder = PoissonEncoder(N_PIXELS, rate_hz=5000.0)
    rng = np.random.default_rng(26)
    for image in (digits[index], digits[0]):
        n_lit = int((image > 0).sum())
        draws = 5
        events = sum(encoder.encode(image, 1000.0, rng).times_ms.size for _ in range(draws))
        per_pixel_hz = events / draws / n_lit
        expected = 5000.0 / n_lit
        assert per_pixel_hz == pytest.approx(expected, rel=4 / math.sqrt(5000.0 * draws))
        if image is digits[index]:
            assert per_pixel_hz == pytest.approx(43.0, rel=0.03)


# ---------------------------------------------------------------------------------------------
# Permutation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permutation_maps_pixel_p_to_channel_permutation_p(digits, seed):
    permutation = np.random.default_rng(100 + seed).permutation(N_PIXELS)
    plain = PoissonEncoder(N_PIXELS).encode(digits[7 + seed], 100.0, np.random.default_rng(seed))
    permuted = PoissonEncoder(N_PIXELS, permutation=permutation).encode(
        digits[7 + seed], 100.0, np.random.default_rng(seed)
    )
    assert plain.times_ms.size > 100
    np.testing.assert_array_equal(permuted.times_ms, plain.times_ms)
    np.testing.assert_array_equal(permuted.channels, permutation[plain.channels])
    assert not np.array_equal(permuted.channels, plain.channels)


def test_encoder_keeps_its_own_copy_of_the_permutation(digits):
    permutation = np.random.default_rng(9).permutation(N_PIXELS)
    encoder = PoissonEncoder(N_PIXELS, permutation=permutation)
    expected = encoder.encode(digits[0], 20.0, np.random.default_rng(0))
    permutation[:] = np.arange(N_PIXELS)  # the caller reuses its array
    events = encoder.encode(digits[0], 20.0, np.random.default_rng(0))
    np.testing.assert_array_equal(events.channels, expected.channels)


# ---------------------------------------------------------------------------------------------
# Blank images and errors


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_blank_image_emits_nothing(dtype):
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    events = PoissonEncoder(N_PIXELS).encode(np.zeros((28, 28), dtype), 1000.0, rng)
    assert events.times_ms.shape == (0,) and events.channels.shape == (0,)
    assert events.times_ms.dtype == np.float64 and events.channels.dtype == np.int32
    assert rng.bit_generator.state == state  # nothing drawn


@pytest.mark.parametrize("duration_ms", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_bad_duration_is_rejected(digits, duration_ms):
    with pytest.raises(ConfigError, match="duration must be a positive number of ms"):
        PoissonEncoder(N_PIXELS).encode(digits[0], duration_ms, np.random.default_rng(0))


@pytest.mark.parametrize("duration_ms", [0.0, float("nan")])
def test_bad_duration_is_rejected_even_for_a_blank_image(duration_ms):
    with pytest.raises(ConfigError, match="duration"):
        PoissonEncoder(4).encode(np.zeros(4), duration_ms, np.random.default_rng(0))


@pytest.mark.parametrize("rate_hz", [0.0, -5000.0, float("nan"), float("inf")])
def test_bad_rate_is_rejected(rate_hz):
    with pytest.raises(ConfigError, match="input rate must be a positive number of events/s"):
        PoissonEncoder(N_PIXELS, rate_hz=rate_hz)


@pytest.mark.parametrize("shape", [(783,), (28, 27), (785,), (0,)])
def test_wrong_pixel_count_is_rejected(shape):
    with pytest.raises(ConfigError, match=r"pixels but the encoder expects 784"):
        PoissonEncoder(N_PIXELS).encode(np.ones(shape), 10.0, np.random.default_rng(0))


def test_negative_intensities_are_rejected():
    with pytest.raises(ConfigError, match="non-negative"):
        PoissonEncoder(3).encode(np.array([1.0, -0.5, 2.0]), 10.0, np.random.default_rng(0))


@pytest.mark.parametrize("image", [[1.0, -1.0], [-1.0, 0.0]])
def test_negative_intensities_are_rejected_even_when_they_sum_to_zero_or_less(image):
    with pytest.raises(ConfigError, match="non-negative"):
        PoissonEncoder(2).encode(np.array(image), 10.0, np.random.default_rng(0))


@pytest.mark.parametrize(
    "permutation",
    [
        [0, 1, 1, 3],  # a repeat
        [0, 1, 2, 4],  # out of range
        [1, 2, 3, 4],  # shifted
        [0, 1, 2],  # too short
        [0, 1, 2, 3, 4],  # too long
        [[0, 1], [2, 3]],  # not flat
        [-1, 0, 1, 2],
    ],
)
def test_permutation_that_is_not_one_is_rejected(permutation):
    with pytest.raises(ConfigError, match=r"permutation must be a permutation of 0\.\.3"):
        PoissonEncoder(4, permutation=np.array(permutation))


def test_nan_intensities_are_rejected():
    with pytest.raises(ConfigError, match="intensities"):
        PoissonEncoder(2).encode(np.array([np.nan, 1.0]), 10.0, np.random.default_rng(0))


def test_intensities_whose_sum_overflows_are_rejected():
    with pytest.raises(ConfigError, match="intensities"):
        PoissonEncoder(2).encode(np.array([1e308, 1e308]), 10.0, np.random.default_rng(0))


def test_strided_and_fortran_ordered_images_encode_like_their_contiguous_copies(digits):
    encoder = PoissonEncoder(N_PIXELS)
    image = digits[0][:, ::-1].astype(np.float64)
    expected = encoder.encode(np.ascontiguousarray(image), 50.0, np.random.default_rng(6))
    for view in (image, np.asfortranarray(image)):
        events = encoder.encode(view, 50.0, np.random.default_rng(6))
        np.testing.assert_array_equal(events.times_ms, expected.times_ms)
        np.testing.assert_array_equal(events.channels, expected.channels)
