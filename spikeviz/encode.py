"""Images to Poisson event streams (PI-MNIST, Sec. 6 of the paper).

Each pixel emits Poisson events at a rate proportional to its intensity; the rates are scaled so
that the whole image emits ``rate_hz`` events per second (5,000 in the paper, which quotes about
43 events/s per non-zero pixel; an average MNIST digit has about 150 lit pixels, so about 33/s).  The superposition of the pixel processes is one Poisson process of
rate ``rate_hz`` whose events pick their pixel with probability intensity / total; that is how the
stream is drawn here, in compiled code and in O(events).
"""

from typing import NamedTuple

import numpy as np

from spikeviz._jit import jit
from spikeviz.errors import ConfigError


class Events(NamedTuple):
    """An event stream: sorted times and the input channel of each event."""

    times_ms: np.ndarray  # (E,) float64, non-decreasing, in [0, duration]
    channels: np.ndarray  # (E,) int32


@jit
def _poisson_kernel(cdf, channel_of, expected_events, duration_ms, rng):
    """Draw the event count, sorted uniform times by normalized exponential spacings, and the
    channel of each event by binary search in the cumulative intensity ``cdf``."""
    n = rng.poisson(expected_events)
    times = np.empty(n, np.float64)
    channels = np.empty(n, np.int32)
    total = 0.0
    for e in range(n):
        total += rng.standard_exponential()
        times[e] = total
    total += rng.standard_exponential()
    scale = duration_ms / total
    last = cdf.size - 1
    for e in range(n):
        times[e] *= scale
        pixel = np.searchsorted(cdf, rng.random() * cdf[-1], side="right")
        channels[e] = channel_of[min(pixel, last)]  # rounding can reach the end of cdf
    return times, channels


def check_duration_rate(duration_ms, rate_hz):
    if not np.isfinite(duration_ms) or duration_ms <= 0:
        raise ConfigError(
            f"presentation duration must be a positive number of ms, got {duration_ms!r} "
            "(the paper uses 50 ms in training and 1000 ms in testing)"
        )
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise ConfigError(
            f"input rate must be a positive number of events/s, got {rate_hz!r} (the paper uses 5000)"
        )


class PoissonEncoder:
    """Turns images into Poisson event streams; the pixel permutation, if any, stays fixed.

    Parameters
    ----------
    n_pixels : int
        Pixels per image (784 for MNIST); also the number of input channels.
    rate_hz : float
        Total event rate of one image, events per second.
    permutation : (n_pixels,) int array, optional
        Pixel p feeds input channel ``permutation[p]`` (a fixed permutation for PI-MNIST
        experiments); identity when None.
    """

    def __init__(self, n_pixels, *, rate_hz=5000.0, permutation=None):
        check_duration_rate(1.0, rate_hz)
        self.n_pixels = int(n_pixels)
        self.rate_hz = float(rate_hz)
        if permutation is None:
            permutation = np.arange(self.n_pixels)
        permutation = np.asarray(permutation)
        if permutation.shape != (self.n_pixels,) or not np.array_equal(
            np.sort(permutation), np.arange(self.n_pixels)
        ):
            raise ConfigError(
                f"permutation must be a permutation of 0..{self.n_pixels - 1} "
                f"(got shape {permutation.shape}); make one with rng.permutation({self.n_pixels})"
            )
        self.permutation = permutation.astype(np.int32)

    def encode(self, image, duration_ms, rng):
        """One presentation of ``image`` lasting ``duration_ms``, drawn from ``rng``.

        Parameters
        ----------
        image : array of n_pixels non-negative intensities (any shape, e.g. (28, 28) uint8)
        duration_ms : float
        rng : numpy.random.Generator; the same state gives the same events

        Returns
        -------
        Events
        """
        check_duration_rate(duration_ms, self.rate_hz)
        pixels = np.asarray(image).reshape(-1)
        if pixels.size != self.n_pixels:
            raise ConfigError(
                f"image has {pixels.size} pixels but the encoder expects {self.n_pixels}; "
                "build the encoder for this image size"
            )
        if not np.all(np.isfinite(pixels)) or np.any(pixels < 0):
            raise ConfigError("image intensities must be finite and non-negative")
        cdf = np.cumsum(pixels, dtype=np.float64)
        if cdf[-1] <= 0:  # a blank image emits nothing
            return Events(np.empty(0, np.float64), np.empty(0, np.int32))
        expected = self.rate_hz * duration_ms / 1000.0
        return Events(*_poisson_kernel(cdf, self.permutation, expected, float(duration_ms), rng))
