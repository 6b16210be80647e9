"""An event-sensor emulator: MNIST digits into N-MNIST-like recordings, the way N-MNIST was made.

N-MNIST (Orchard, Jayawant, Cohen, Thakor 2015) was recorded by an ATIS event camera on a
pan-tilt unit looking at each MNIST digit on a monitor: the camera made three saccades along a
triangle, about 100 ms each, and its 34 x 34 crop holds the digit at about one sensor pixel per
MNIST pixel. This module does the same in software, so the N-MNIST pipeline runs on a machine
without the recordings (:func:`emulate_nmnist` gives an :class:`~spikeviz.data.nmnist.NMNIST`
that trains and evaluates exactly like the real one).

The model, step by step
-----------------------
1. **Scene.** The 28 x 28 digit is placed with its top-left corner at ``origin_px`` on the
   34 x 34 sensor. With ``dark_digit`` (the default) the light reaching the sensor is
   ``I = 1 - image / 255`` on a bright background (``I = 1``), otherwise ``image / 255`` on a
   black one. Dark was measured, not assumed: in the real recordings, strokes emit ON events on
   their trailing edges and OFF events on their leading edges (the image moves along the
   centroid path below), which is what a dark stroke on a bright screen does (or a bright
   stroke with the polarity bit swapped: the two are the same up to ``log_offset``).
2. **Motion.** The image moves along a closed triangle (``saccades``): each saccade moves it
   by ``(dx_px, dy_px)`` between ``start_ms`` and ``end_ms`` with a velocity profile
   ``v(u) ~ u^rise (1 - u)^fall`` (``u`` the fraction of the saccade's time), so each saccade
   is a burst of events that swells and fades. Sensor pixel ``(row, col)`` sees the scene at
   ``(row - oy - dy(t), col - ox - dx(t))``, sampled by bilinear interpolation (sub-pixel
   motion), every ``step_us`` microseconds.
3. **Pixels.** Each pixel converts intensity to ``L = log(I + log_offset)`` and remembers the
   level of its last event, ``L_ref``. Whenever ``L - L_ref >= theta_on`` it emits an ON event
   and raises ``L_ref`` by ``theta_on``; whenever ``L_ref - L >= theta_off`` an OFF event and
   lowers it by ``theta_off``: a change that spans several thresholds gives several events.
   Within a time step ``L`` is taken to change linearly, so each event is timed where ``L``
   crosses its level (timestamps in whole microseconds, rounded down).
4. **Tremor.** The real recordings have events between the saccades too, where the digit is
   (the pan-tilt unit never stands perfectly still): a small random jitter, an
   Ornstein-Uhlenbeck process of ``tremor_px`` standard deviation and ``tremor_ms``
   correlation time, is added to the path.
5. **Noise.** Threshold mismatch: ``theta_on`` and ``theta_off`` of each pixel are
   ``threshold * (1 + threshold_mismatch * N(0, 1))`` (at least ``threshold / 4``). The
   reference level starts at a random phase within one threshold of the first level, as in a
   sensor that has been running. Background activity: each pixel emits extra events, ON or OFF
   with equal odds, as a Poisson process of ``noise_rate_hz``, over the whole recording.

Steps 2 and 3 are one numba kernel, :func:`_sensor_kernel` (its slow, readable twin is in
``tests/data/test_emulator.py``); the rest is NumPy. Motion stops between saccades, and the
kernel skips time steps in which the image did not move (the levels cannot change there).

Defaults and calibration
------------------------
The defaults (:data:`DEFAULT_PARAMS`) were chosen by ``scripts/calibrate_emulator.py``, which
emulates the very MNIST digits of the 1,000 real recordings in ``../shared/data/nmnist/Train``
and compares events per recording, ON fraction, duration, the event rate over time and the
event centroid's path; ``docs/emulator.md`` has the table and the figure. The saccade
triangle and timing were measured from the real recordings' event centroids (minus each
digit's own centroid) over time.

Randomness comes only from the caller's ``numpy.random.Generator``; :func:`emulate_nmnist`
gives recording ``i`` of a split its own generator, ``default_rng([seed, split, i])``, so a
recording is the same whichever other recordings are emulated and however many threads run.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from spikeviz._jit import jit
from spikeviz.data.nmnist import (
    NMNIST, NMNIST_DTYPE, SENSOR_HEIGHT, SENSOR_WIDTH, EventRecordings,
)
from spikeviz.errors import ConfigError

__all__ = ["DEFAULT_PARAMS", "EMULATED_ORIGIN", "EmulatorParams", "Saccade",
           "emulate_nmnist", "emulate_recording", "saccade_path"]

#: ``NMNIST.origin`` of emulated data sets (followed by the parameters that differ).
EMULATED_ORIGIN = "emulated (spikeviz.data.emulator)"


class Saccade(NamedTuple):
    """One straight movement of the image on the sensor."""

    start_ms: float  # when it starts
    end_ms: float  # when it stops
    dx_px: float  # displacement, sensor pixels, + = right
    dy_px: float  # displacement, sensor pixels, + = down
    rise: float = 1.0  # velocity ~ u**rise * (1 - u)**fall, u = elapsed fraction of the saccade
    fall: float = 1.0


class EmulatorParams(NamedTuple):
    """Every setting of the emulator; :data:`DEFAULT_PARAMS` holds the calibrated defaults."""

    threshold: float  # contrast threshold, in natural-log units of intensity
    threshold_mismatch: float  # relative standard deviation of the per-pixel thresholds
    log_offset: float  # L = log(I + log_offset), I in 0..1
    dark_digit: bool  # the digit dark on a bright screen (I = 1 - image / 255), as measured
    noise_rate_hz: float  # background-activity events per pixel per second
    origin_px: tuple  # (x, y) of the digit's top-left corner on the sensor, before moving
    saccades: tuple  # Saccade, ..., applied one after the other (a closed triangle)
    tremor_px: float  # standard deviation of the random jitter added to the path, pixels
    tremor_ms: float  # correlation time of that jitter (an Ornstein-Uhlenbeck process)
    duration_ms: float  # length of the recording (noise covers all of it)
    step_us: int  # time step of the motion and of the pixels' sampling


#: Calibrated against the 1,000 real recordings (scripts/calibrate_emulator.py).
DEFAULT_PARAMS = EmulatorParams(
    threshold=0.40,
    threshold_mismatch=0.1,
    log_offset=0.1,
    dark_digit=True,
    noise_rate_hz=0.4,
    origin_px=(0.2, 1.4),
    saccades=(
        Saccade(0.0, 80.0, 2.0, 5.3, 1.5, 1.0),
        Saccade(100.0, 185.0, 3.4, -5.0, 1.4, 1.0),
        Saccade(226.0, 305.0, -5.4, -0.3, 0.8, 1.6),
    ),
    tremor_px=0.1,
    tremor_ms=10.0,
    duration_ms=306.0,
    step_us=1000,
)


def saccade_path(times_us, saccades):
    """The image's displacement at each time: the saccades' movements, added up.

    Parameters
    ----------
    times_us : array_like
        Shape ``(n,)``, times in microseconds.
    saccades : sequence of Saccade

    Returns
    -------
    dx_px, dy_px : numpy.ndarray
        Shape ``(n,)`` float64, displacement from the start position, sensor pixels.
    """
    times_ms = np.asarray(times_us, dtype=np.float64) / 1000.0
    dx_px = np.zeros(times_ms.shape)
    dy_px = np.zeros(times_ms.shape)
    for saccade in saccades:
        fraction = _saccade_fraction(times_ms, saccade)
        dx_px += saccade.dx_px * fraction
        dy_px += saccade.dy_px * fraction
    return dx_px, dy_px


def _saccade_fraction(times_ms, saccade, n_grid=2001):
    """Fraction 0..1 of the saccade's distance covered at each time (the integral of its
    velocity profile, by the trapezoidal rule on ``n_grid`` points)."""
    length_ms = saccade.end_ms - saccade.start_ms
    u = np.clip((times_ms - saccade.start_ms) / length_ms, 0.0, 1.0)
    grid = np.linspace(0.0, 1.0, n_grid)
    velocity = grid ** saccade.rise * (1.0 - grid) ** saccade.fall
    covered = np.concatenate(([0.0], np.cumsum((velocity[1:] + velocity[:-1]) / 2.0)))
    return np.interp(u, grid, covered / covered[-1])


def _params(overrides):
    """DEFAULT_PARAMS with ``overrides`` applied and checked."""
    unknown = set(overrides) - set(EmulatorParams._fields)
    if unknown:
        raise ConfigError(f"unknown emulator parameter(s) {sorted(unknown)}; the parameters "
                          f"are {list(EmulatorParams._fields)}")
    params = DEFAULT_PARAMS._replace(**overrides)
    saccades = tuple(Saccade(*s) for s in params.saccades)
    params = params._replace(saccades=saccades, origin_px=tuple(map(float, params.origin_px)),
                             step_us=int(params.step_us), dark_digit=bool(params.dark_digit))
    problems = []
    if not params.threshold > 0:
        problems.append(f"threshold must be > 0, not {params.threshold}")
    if not params.threshold_mismatch >= 0:
        problems.append(f"threshold_mismatch must be >= 0, not {params.threshold_mismatch}")
    if not params.log_offset > 0:
        problems.append(f"log_offset must be > 0, not {params.log_offset}")
    if not params.noise_rate_hz >= 0:
        problems.append(f"noise_rate_hz must be >= 0, not {params.noise_rate_hz}")
    if len(params.origin_px) != 2:
        problems.append(f"origin_px must be (x, y), not {params.origin_px}")
    if not (params.tremor_px >= 0 and params.tremor_ms > 0):
        problems.append(f"tremor_px must be >= 0 and tremor_ms > 0, not {params.tremor_px} "
                        f"and {params.tremor_ms}")
    if not params.duration_ms > 0:
        problems.append(f"duration_ms must be > 0, not {params.duration_ms}")
    if not params.step_us >= 1:
        problems.append(f"step_us must be >= 1, not {params.step_us}")
    for s in saccades:
        if not (0 <= s.start_ms < s.end_ms and s.rise >= 0 and s.fall >= 0):
            problems.append(f"saccade {s} needs 0 <= start_ms < end_ms and rise, fall >= 0")
    if problems:
        raise ConfigError("emulator parameters: " + "; ".join(problems) + ".")
    return params


def emulate_recording(image, rng, **params):
    """Emulate the N-MNIST recording of one image.

    Parameters
    ----------
    image : array_like
        Shape ``(28, 28)`` (any height and width up to the sensor's works), intensities
        0..255 (uint8 or float), bright digit on a dark background.
    rng : numpy.random.Generator
        Draws, in this order: the ON thresholds, the OFF thresholds (one per pixel each), the
        reference phases, the tremor, then the noise events (count per pixel, times, polarities).
    **params
        Fields of :class:`EmulatorParams` to change from :data:`DEFAULT_PARAMS`, e.g.
        ``threshold=0.3`` or ``noise_rate_hz=0``.

    Returns
    -------
    numpy.ndarray
        Shape ``(E,)``, :data:`~spikeviz.data.nmnist.NMNIST_DTYPE`: x, y in 0..33, t in
        microseconds, sorted (non-decreasing), in ``0 .. duration_ms * 1000``, p 0 = OFF,
        1 = ON.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
    p = _params(params)
    return _emulate(_check_image(image), rng, p, _motion(p))


def emulate_nmnist(mnist, *, n_train=None, n_test=None, seed=0, threads=None, **params):
    """Emulate N-MNIST recordings of the images of an MNIST data set.

    Parameters
    ----------
    mnist : spikeviz.data.mnist.MNIST
        The images, e.g. ``load_mnist(bundled=True)`` (5,000 + 1,000 real digits).
    n_train, n_test : int, optional
        Emulate the first ``n`` images of each split (default: all).
    seed : int, optional
        Recording ``i`` of split ``s`` (0 = train, 1 = test) is drawn by
        ``numpy.random.default_rng([seed, s, i])``.
    threads : int, optional
        Worker threads (default: the number of CPUs); the result does not depend on it.
    **params
        Fields of :class:`EmulatorParams` to change from :data:`DEFAULT_PARAMS`.

    Returns
    -------
    NMNIST
        Recordings ordered by label, then id, as :func:`~spikeviz.data.nmnist.load_nmnist`
        orders them; ``*_ids`` are 1-based indices of the images in ``mnist``'s split;
        ``origin`` starts with :data:`EMULATED_ORIGIN`; ``test_is_validation_split`` is False.
    """
    p = _params(params)
    motion = _motion(p)
    threads = (os.cpu_count() or 1) if threads is None else max(1, int(threads))
    splits = {}
    for split_index, split in enumerate(("train", "test")):
        images = getattr(mnist, f"{split}_images")
        labels = getattr(mnist, f"{split}_labels")
        count = len(images) if (n := {"train": n_train, "test": n_test}[split]) is None else n
        if not 0 <= count <= len(images):
            raise ConfigError(f"n_{split} must be 0..{len(images)}, not {count}")
        order = np.lexsort((np.arange(count), labels[:count]))  # by label, then id

        def one(i, images=images, split_index=split_index):
            rng = np.random.default_rng([seed, split_index, int(i)])
            return _emulate(_check_image(images[i]), rng, p, motion)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            recordings = list(pool.map(one, order, chunksize=16))
        splits[split] = (_to_recordings(recordings), labels[order].astype(np.uint8),
                         order.astype(np.int64) + 1)
    changed = {key: value for key, value in p._asdict().items()
               if value != getattr(DEFAULT_PARAMS, key)}
    origin = EMULATED_ORIGIN + (f" from {mnist.origin}, seed {seed}"
                                + (f", {changed}" if changed else ""))
    return NMNIST(train_events=splits["train"][0], train_labels=_frozen(splits["train"][1]),
                  train_ids=_frozen(splits["train"][2]), test_events=splits["test"][0],
                  test_labels=_frozen(splits["test"][1]), test_ids=_frozen(splits["test"][2]),
                  origin=origin)


# --- the pieces ------------------------------------------------------------------------------

class _Motion(NamedTuple):
    """The image path sampled at the time steps, in the kernel's terms."""

    step_times_us: np.ndarray  # (n_steps + 1,) int64, 0, step_us, ..., last step
    row_px: np.ndarray  # (n_steps + 1,) float64: sensor row 0 sees image row -row_px[k]
    col_px: np.ndarray  # (n_steps + 1,) float64: sensor column 0 sees image column -col_px[k]
    tremor_filter: np.ndarray  # (n_steps + 1, n_steps + 1) exp(-(t_k - t_j) / tau), j <= k
    tremor_gain: np.ndarray  # (n_steps + 1,) the std of each step's new jitter, pixels


def _motion(p):
    """Sample the path every ``step_us`` over the recording (the last step at or after the end
    of the last saccade, never beyond ``duration_ms``)."""
    duration_us = int(round(p.duration_ms * 1000.0))
    n_steps = -(-duration_us // p.step_us)
    times_us = np.minimum(np.arange(n_steps + 1, dtype=np.int64) * p.step_us, duration_us)
    dx_px, dy_px = saccade_path(times_us, p.saccades)
    tau_us = p.tremor_ms * 1000.0
    lag_us = (times_us[:, None] - times_us[None, :]).astype(np.float64)
    tremor_filter = np.where(lag_us >= 0, np.exp(-np.maximum(lag_us, 0.0) / tau_us), 0.0)
    gain = p.tremor_px * np.sqrt(-np.expm1(-2.0 * np.diff(times_us, prepend=-np.inf) / tau_us))
    return _Motion(times_us, p.origin_px[1] + dy_px, p.origin_px[0] + dx_px, tremor_filter,
                   gain)


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 2 or image.shape[0] > SENSOR_HEIGHT or image.shape[1] > SENSOR_WIDTH:
        raise ConfigError(f"image must be 2-D and fit the {SENSOR_WIDTH} x {SENSOR_HEIGHT} "
                          f"sensor, not of shape {image.shape}")
    return image.astype(np.float64) / 255.0


def _emulate(image, rng, p, motion):
    """One recording of an image scaled to 0..1 (see :func:`emulate_recording`)."""
    n_pixels = SENSOR_HEIGHT * SENSOR_WIDTH
    theta_on = _thresholds(rng, p, n_pixels)
    theta_off = _thresholds(rng, p, n_pixels)
    phase = np.clip(rng.random(n_pixels), 1e-6, 1.0 - 1e-6)
    motion = _add_tremor(motion, rng, p)
    # The scene on a canvas wide enough for every sampled position (and one pixel more for the
    # bilinear neighbours): sensor pixel (r, c) reads canvas (r + pad - row_px, c + pad - col_px).
    pad = int(np.ceil(max(np.abs(motion.row_px).max(), np.abs(motion.col_px).max()))) + 2
    height, width = image.shape
    canvas = np.zeros((SENSOR_HEIGHT + 2 * pad, SENSOR_WIDTH + 2 * pad))
    canvas[pad:pad + height, pad:pad + width] = image
    capacity = 16384  # enough for nearly every digit; else the kernel asks for more
    while True:
        out_x = np.empty(capacity, np.int64)
        out_y = np.empty(capacity, np.int64)
        out_t = np.empty(capacity, np.int64)
        out_p = np.empty(capacity, np.int64)
        base, gain = (1.0, -1.0) if p.dark_digit else (0.0, 1.0)
        n_events = _sensor_kernel(canvas, base, gain, float(p.log_offset), pad - motion.row_px,
                                  pad - motion.col_px, motion.step_times_us, theta_on,
                                  theta_off, phase, out_x, out_y, out_t, out_p)
        if n_events >= 0:
            break
        capacity = -n_events  # the kernel says how many it needed
    noise = _noise_events(rng, p, n_pixels)
    events = np.empty(n_events + noise[0].size, NMNIST_DTYPE)
    for name, signal, extra in zip("xytp", (out_x, out_y, out_t, out_p), noise):
        events[name][:n_events] = signal[:n_events]
        events[name][n_events:] = extra
    return events[np.argsort(events["t"], kind="stable")]


def _add_tremor(motion, rng, p):
    """The path plus a 2-D Ornstein-Uhlenbeck jitter (stationary, std ``tremor_px``, correlation
    time ``tremor_ms``), exact at the steps; draws 2 x (n_steps + 1) normals (none if off).

    Sample k is ``sum_j exp(-(t_k - t_j) / tau) * c_j * z_j`` over j <= k, with ``c_0 =
    tremor_px`` and ``c_j = tremor_px * sqrt(1 - exp(-2 (t_j - t_{j-1}) / tau))``: the OU
    recursion unrolled into one matrix product (``motion.tremor_filter``).
    """
    if p.tremor_px == 0:
        return motion
    kicks = rng.standard_normal((2, motion.step_times_us.size))
    jitter = (kicks * motion.tremor_gain) @ motion.tremor_filter.T
    return motion._replace(row_px=motion.row_px + jitter[1], col_px=motion.col_px + jitter[0])


def _thresholds(rng, p, n_pixels):
    """Per-pixel contrast thresholds, shape (34 * 34,) float64, row-major."""
    spread = 1.0 + p.threshold_mismatch * rng.standard_normal(n_pixels)
    return p.threshold * np.maximum(spread, 0.25)


def _noise_events(rng, p, n_pixels):
    """Background activity: columns x, y, t (us), p of Poisson events, ON or OFF at random."""
    duration_us = int(round(p.duration_ms * 1000.0))
    counts = rng.poisson(p.noise_rate_hz * duration_us / 1e6, n_pixels)
    pixel = np.repeat(np.arange(n_pixels), counts)
    times = rng.integers(0, duration_us, pixel.size, endpoint=True)
    polarity = rng.integers(0, 2, pixel.size)
    return pixel % SENSOR_WIDTH, pixel // SENSOR_WIDTH, times, polarity



@jit(inline="always")
def _crossing_us(t_start, span_us, ref, old, new):
    """Time within the step where the ramp old -> new crosses the level ``ref``."""
    return t_start + np.int64(np.floor(span_us * ((ref - old) / (new - old))))


@jit(inline="always")
def _emit(out_x, out_y, out_t, out_p, n_events, capacity, col, row, t_us, polarity):
    """Store one event if there is room (the count goes on, so overflow is reported)."""
    if n_events < capacity:
        out_x[n_events] = col
        out_y[n_events] = row
        out_t[n_events] = t_us
        out_p[n_events] = polarity
    return n_events + 1

@jit
def _sensor_kernel(canvas, base, gain, log_offset, top_px, left_px, step_times_us, theta_on,
                   theta_off, phase, out_x, out_y, out_t, out_p):
    """The pixels of the sensor watching the moving scene: events of steps 2 and 3 above.

    Parameters
    ----------
    canvas : (Hc, Wc) float64
        The image, 0..1, on a background of 0, padded so every sample falls inside.
    base, gain : float
        The light reaching a pixel is ``I = base + gain * v``, ``v`` the bilinearly
        interpolated canvas (1, -1: a dark digit on a bright screen; 0, 1: bright on black).
        The background stays exactly 0 under interpolation, so pixels that see only
        background are skipped exactly.
    log_offset : float
        A pixel's level is ``log(I + log_offset)``.
    top_px, left_px : (K + 1,) float64
        At step k, sensor pixel (r, c) sees the canvas at (top_px[k] + r, left_px[k] + c),
        bilinearly interpolated (the light reaching the pixel; its log is taken after).
    step_times_us : (K + 1,) int64
        Time of each step, microseconds, increasing.
    theta_on, theta_off : (34 * 34,) float64
        Contrast thresholds of each pixel (row-major), log units.
    phase : (34 * 34,) float64
        In (0, 1): the reference level starts at ``L0 - theta_on + phase * (theta_on +
        theta_off)``, strictly between the levels that would fire an ON or an OFF event.
    out_x, out_y, out_t, out_p : (capacity,) int64
        Filled with the events, in step order, pixels row-major within a step (not sorted by
        time within a step).

    Returns
    -------
    int
        The number of events, or minus the capacity needed if they did not fit (then the
        outputs hold a partial result; call again with larger arrays).
    """
    n_rows, n_cols = 34, 34
    intensity = np.empty((n_rows, n_cols))
    level = np.empty((n_rows, n_cols))  # log(intensity + log_offset), kept to save a log
    reference = np.empty((n_rows, n_cols))
    for row in range(n_rows):
        for col in range(n_cols):
            pixel = row * n_cols + col
            intensity[row, col] = _bilinear(canvas, top_px[0] + row, left_px[0] + col)
            level[row, col] = np.log(base + gain * intensity[row, col] + log_offset)
            # In (level - theta_on, level + theta_off): no event until the level changes.
            reference[row, col] = (level[row, col] - theta_on[pixel]
                                   + phase[pixel] * (theta_on[pixel] + theta_off[pixel]))
    capacity = out_x.size
    n_events = 0
    for step in range(1, top_px.size):
        if top_px[step] == top_px[step - 1] and left_px[step] == left_px[step - 1]:
            continue  # the image did not move: no level changes
        t_start = step_times_us[step - 1]
        span_us = step_times_us[step] - t_start
        # The shift is the same for every pixel: its whole and fractional parts once per step.
        top = int(np.floor(top_px[step]))
        left = int(np.floor(left_px[step]))
        down = top_px[step] - top
        right = left_px[step] - left
        for row in range(n_rows):
            for col in range(n_cols):
                new_intensity = _interpolate(canvas, top + row, left + col, down, right)
                old_intensity = intensity[row, col]
                if new_intensity == old_intensity:
                    continue  # e.g. black background all around: the level did not change
                intensity[row, col] = new_intensity
                old = level[row, col]
                new = np.log(base + gain * new_intensity + log_offset)
                level[row, col] = new
                pixel = row * n_cols + col
                ref = reference[row, col]
                # ON events while the level is a full threshold above the reference, OFF while
                # a full threshold below; each timed where the ramp old -> new crosses it.
                while new - ref >= theta_on[pixel]:
                    ref += theta_on[pixel]
                    n_events = _emit(out_x, out_y, out_t, out_p, n_events, capacity, col, row,
                                     _crossing_us(t_start, span_us, ref, old, new), 1)
                while ref - new >= theta_off[pixel]:
                    ref -= theta_off[pixel]
                    n_events = _emit(out_x, out_y, out_t, out_p, n_events, capacity, col, row,
                                     _crossing_us(t_start, span_us, ref, old, new), 0)
                reference[row, col] = ref
    return n_events if n_events <= capacity else -n_events


@jit
def _bilinear(canvas, row, col):
    """``canvas`` at fractional (row, col), bilinear interpolation of the 4 neighbours."""
    top = int(np.floor(row))
    left = int(np.floor(col))
    return _interpolate(canvas, top, left, row - top, col - left)


@jit
def _interpolate(canvas, row, col, down, right):
    """``canvas`` at (row + down, col + right), 0 <= down, right < 1, bilinearly."""
    return ((1.0 - down) * ((1.0 - right) * canvas[row, col] + right * canvas[row, col + 1])
            + down * ((1.0 - right) * canvas[row + 1, col] + right * canvas[row + 1, col + 1]))


def _to_recordings(recordings):
    """A list of NMNIST_DTYPE arrays as one EventRecordings."""
    offsets = np.zeros(len(recordings) + 1, np.int64)
    np.cumsum([r.size for r in recordings], out=offsets[1:])
    if recordings:
        events = np.concatenate(recordings)
    else:
        events = np.empty(0, NMNIST_DTYPE)
    return EventRecordings(events["x"], events["y"], events["t"], events["p"].astype(bool),
                           offsets)


def _frozen(array):
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array
