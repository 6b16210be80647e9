"""Images to Poisson event streams (PI-MNIST, Sec. 6 of the paper).

Each pixel emits Poisson events at a rate proportional to its intensity; the rates are scaled so
that the whole image emits ``rate_hz`` events per second (5,000 in the paper, which quotes about
43 events/s per non-zero pixel; an average MNIST digit has about 150 lit pixels, so about 33/s).
The superposition of the pixel processes is one Poisson process of rate ``rate_hz`` whose events
pick their pixel with probability intensity / total; that is how the stream is drawn here, in
O(lit pixels + events):

1. the number of events is Poisson; their times are normalized exponential spacings (the sorted
   times of a Poisson process given its count), so they come out sorted;
2. each event picks its pixel from a Walker/Vose alias table over the lit pixels, built per
   image in O(lit pixels): one uniform u gives both the column, the integer part of
   u * columns, and the coin, its fraction.

The draws are made by NumPy from the caller's ``Generator``, one vectorized call each (count,
spacings, uniforms, in that order), and the kernels work on plain arrays: passing a
``Generator`` into a numba kernel costs more per call (about 7 us to unbox it) than drawing 250
events, the size of a training presentation.
"""

import math
from typing import NamedTuple

import numpy as np

from spikeviz._jit import jit
from spikeviz.errors import ConfigError


class Events(NamedTuple):
    """An event stream: sorted times and the input channel of each event."""

    times_ms: np.ndarray  # (E,) float64, non-decreasing, in [0, duration]
    channels: np.ndarray  # (E,) int32


_VALID, _BLANK, _INVALID = 0, 1, 2  # status of an image, returned by _alias_table


@jit
def _alias_table(pixels, channel_of):
    """Check the intensities and build the alias table of the lit pixels.

    Parameters
    ----------
    pixels : (P,) float64 intensities
    channel_of : (P,) int32, the input channel of each pixel

    Returns
    -------
    status : _VALID, _BLANK (no lit pixel) or _INVALID (a NaN, infinite or negative intensity)
    cutoff : (K,) float64, column c keeps its own channel when the coin is below cutoff[c]
    own_channel, alias_channel : (K,) int32, the channels of column c and of its alias
    """
    # One pass: check, sum and compact the lit pixels into the columns. Branch-free (digits
    # switch between lit and blank too often for a branch predictor): every pixel is written to
    # the next free column, which only a lit pixel then takes.
    n_pixels = pixels.size
    scaled = np.empty(n_pixels, np.float64)
    own_channel = np.empty(n_pixels, np.int32)
    valid = True
    total = 0.0
    n_lit = 0
    for p in range(n_pixels):
        intensity = float(pixels[p])  # a no-op compiled; without jit, overflow gives no warning
        valid &= 0.0 <= intensity < np.inf  # NaN fails both comparisons
        total += intensity  # in pixel order; the blank pixels add nothing
        scaled[n_lit] = intensity
        own_channel[n_lit] = channel_of[p]
        n_lit += intensity > 0.0
    if not (valid and total < np.inf):  # the sum of finite intensities may still overflow
        return _INVALID, scaled[:0], own_channel[:0], own_channel[:0]
    if n_lit == 0:
        return _BLANK, scaled[:0], own_channel[:0], own_channel[:0]
    scaled, own_channel = scaled[:n_lit], own_channel[:n_lit]
    unit = n_lit / total
    for c in range(n_lit):
        scaled[c] *= unit  # probability of column c times the column count
    # Vose: pair each column below 1 with one above, which gives it its excess. Both are stacks
    # filled in column order (the naive twin builds them the same way); pushes are branch-free
    # too: the column goes on top of both, and only the count of its own stack moves.
    cutoff = np.ones(n_lit, np.float64)  # columns left over (rounding) keep their own channel
    alias = np.arange(n_lit)
    small = np.empty(n_lit, np.int64)
    large = np.empty(n_lit, np.int64)
    n_small = n_large = 0
    for c in range(n_lit):
        is_small = scaled[c] < 1.0
        small[n_small] = large[n_large] = c
        n_small += is_small
        n_large += 1 - is_small
    while n_small > 0 and n_large > 0:
        n_small -= 1
        n_large -= 1
        s, g = small[n_small], large[n_large]
        cutoff[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        is_small = scaled[g] < 1.0
        small[n_small] = large[n_large] = g
        n_small += is_small
        n_large += 1 - is_small
    alias_channel = np.empty(n_lit, np.int32)
    for c in range(n_lit):
        alias_channel[c] = own_channel[alias[c]]
    return _VALID, cutoff, own_channel, alias_channel


@jit
def _poisson_kernel(spacings, uniforms, cutoff, own_channel, alias_channel, duration_ms):
    """Event times from the ``E + 1`` exponential ``spacings`` (their running total, scaled so
    that the last total is ``duration_ms``) and the channels of the ``E`` events from the
    ``uniforms`` in [0, 1) through the alias table.

    Returns (E,) float64 times in ms and (E,) int32 channels.
    """
    n = uniforms.size
    n_columns = cutoff.size
    times = np.empty(n, np.float64)
    channels = np.empty(n, np.int32)
    total = 0.0
    for e in range(n):
        # The running total is a chain of dependent additions; the channel lookup fills the
        # wait between them.
        total += spacings[e]
        times[e] = total
        x = uniforms[e] * n_columns
        column = min(int(x), n_columns - 1)  # guard only: u < 1 keeps x below n_columns
        # Both loads first, then a select the compiler makes branch-free: the coin is random,
        # and a branch on it would be mispredicted on a good share of the events.
        own, other = own_channel[column], alias_channel[column]
        channels[e] = own if x - column < cutoff[column] else other
    total += spacings[n]
    scale = duration_ms / total
    for e in range(n):
        times[e] *= scale
    return times, channels


def check_duration_rate(duration_ms, rate_hz):
    # Chained comparisons: NaN and infinities fail them, and they cost less than np.isfinite.
    if not 0.0 < duration_ms < math.inf:
        raise ConfigError(
            f"presentation duration must be a positive number of ms, got {duration_ms!r} "
            "(the paper uses 50 ms in training and 1000 ms in testing)"
        )
    if not 0.0 < rate_hz < math.inf:
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
        pixels = np.ascontiguousarray(image, dtype=np.float64).reshape(-1)
        if pixels.size != self.n_pixels:
            raise ConfigError(
                f"image has {pixels.size} pixels but the encoder expects {self.n_pixels}; "
                "build the encoder for this image size"
            )
        status, cutoff, own_channel, alias_channel = _alias_table(pixels, self.permutation)
        if status == _INVALID:
            raise ConfigError("image intensities must be finite and non-negative")
        if status == _BLANK:  # a blank image emits nothing, and draws nothing
            return Events(np.empty(0, np.float64), np.empty(0, np.int32))
        n_events = rng.poisson(self.rate_hz * duration_ms / 1000.0)
        spacings = rng.standard_exponential(n_events + 1)
        uniforms = rng.random(n_events)
        return Events(*_poisson_kernel(
            spacings, uniforms, cutoff, own_channel, alias_channel, float(duration_ms)
        ))
