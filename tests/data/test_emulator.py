"""The sensor emulator: its kernel against a slow twin, the event-stream contract, the physics
of an event sensor (noise only on a blank scene, nothing without motion, ON/OFF balance, three
bursts), the statistics of real recordings of the same digits, and training on its output."""

import math
from pathlib import Path

import numpy as np
import pytest

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.data.emulator import (
    DEFAULT_PARAMS, EMULATED_ORIGIN, Saccade, _add_tremor, _motion, _params, _sensor_kernel,
    emulate_nmnist, emulate_recording, saccade_path,
)
from spikeviz.data.nmnist import NMNIST, NMNIST_DTYPE, load_nmnist
from spikeviz.errors import ConfigError
from spikeviz.train.tasks import RecordingTask
from spikeviz.train.trainer import Trainer

SHARED_NMNIST = Path(__file__).parents[2] / ".." / "shared" / "data" / "nmnist"
N_PIXELS = 34 * 34


@pytest.fixture(scope="module")
def digits(shared_mnist):
    """The first 60 MNIST training images (N-MNIST ids 1..60 recorded these)."""
    return load_mnist(shared_mnist).train_images[:60]


# --- the slow, readable twin of _sensor_kernel -------------------------------------------------

def naive_sensor(canvas, base, gain, log_offset, top_px, left_px, step_times_us, theta_on,
                 theta_off, phase):
    """Twin of ``_sensor_kernel``: pixel by pixel, step by step, in plain Python.

    Returns the events as a list of (x, y, t_us, p) in the kernel's order (step, then pixel
    row-major), with the same float arithmetic in the same order.
    """
    def interpolate(row, col, down, right):
        return ((1.0 - down) * ((1.0 - right) * canvas[row, col] + right * canvas[row, col + 1])
                + down * ((1.0 - right) * canvas[row + 1, col]
                          + right * canvas[row + 1, col + 1]))

    intensity, level, reference = {}, {}, {}
    for row in range(34):
        for col in range(34):
            pixel = row * 34 + col
            r, c = top_px[0] + row, left_px[0] + col
            intensity[pixel] = interpolate(math.floor(r), math.floor(c), r - math.floor(r),
                                           c - math.floor(c))
            level[pixel] = math.log(base + gain * intensity[pixel] + log_offset)
            reference[pixel] = (level[pixel] - theta_on[pixel]
                                + phase[pixel] * (theta_on[pixel] + theta_off[pixel]))
    events = []
    for step in range(1, len(top_px)):
        top, left = math.floor(top_px[step]), math.floor(left_px[step])
        down, right = top_px[step] - top, left_px[step] - left
        t_start = int(step_times_us[step - 1])
        span_us = int(step_times_us[step]) - t_start
        for row in range(34):
            for col in range(34):
                pixel = row * 34 + col
                new_intensity = interpolate(top + row, left + col, down, right)
                if new_intensity == intensity[pixel]:
                    continue
                intensity[pixel] = new_intensity
                old, new = level[pixel], math.log(base + gain * new_intensity + log_offset)
                level[pixel] = new
                while new - reference[pixel] >= theta_on[pixel]:  # one ON event per threshold
                    reference[pixel] += theta_on[pixel]
                    crossing = (reference[pixel] - old) / (new - old)
                    events.append((col, row, t_start + math.floor(span_us * crossing), 1))
                while reference[pixel] - new >= theta_off[pixel]:  # one OFF event per threshold
                    reference[pixel] -= theta_off[pixel]
                    crossing = (reference[pixel] - old) / (new - old)
                    events.append((col, row, t_start + math.floor(span_us * crossing), 0))
    return events


def kernel_inputs(image, seed, **overrides):
    """The kernel's inputs for ``image`` as ``_emulate`` builds them."""
    p = _params(overrides)
    rng = np.random.default_rng(seed)
    theta_on = p.threshold * np.maximum(1.0 + p.threshold_mismatch * rng.standard_normal(N_PIXELS),
                                        0.25)
    theta_off = p.threshold * np.maximum(1.0 + p.threshold_mismatch
                                         * rng.standard_normal(N_PIXELS), 0.25)
    phase = np.clip(rng.random(N_PIXELS), 1e-6, 1.0 - 1e-6)
    motion = _add_tremor(_motion(p), rng, p)
    pad = 12
    canvas = np.zeros((34 + 2 * pad, 34 + 2 * pad))
    canvas[pad:pad + 28, pad:pad + 28] = np.asarray(image, float) / 255.0
    base, gain = (1.0, -1.0) if p.dark_digit else (0.0, 1.0)
    return (canvas, base, gain, float(p.log_offset), pad - motion.row_px, pad - motion.col_px,
            motion.step_times_us, theta_on, theta_off, phase)


@pytest.mark.parametrize("case", [
    dict(saccades=(Saccade(0.0, 30.0, 2.0, 1.5),), duration_ms=30.0),
    dict(saccades=(Saccade(0.0, 30.0, 2.0, 1.5),), duration_ms=30.0, dark_digit=False),
    dict(saccades=(Saccade(2.0, 25.0, -1.5, 2.5, 0.5, 2.0),), duration_ms=40.0, step_us=700,
         threshold=0.2, threshold_mismatch=0.3, tremor_px=0.3),
])
def test_kernel_matches_naive_twin(digits, case):
    inputs = kernel_inputs(digits[1], seed=3, **case)
    capacity = 200_000
    out = [np.empty(capacity, np.int64) for _ in range(4)]
    n_events = _sensor_kernel(*inputs, *out)
    twin = naive_sensor(*inputs)
    assert n_events == len(twin) > 100
    np.testing.assert_array_equal(np.stack([column[:n_events] for column in out], axis=1),
                                  np.array(twin, np.int64))
    # Too small an output: the kernel says how much it needs instead of overflowing.
    small = [np.empty(10, np.int64) for _ in range(4)]
    assert _sensor_kernel(*inputs, *small) == -n_events


# --- contract ----------------------------------------------------------------------------------

def test_event_stream_contract(digits):
    events = emulate_recording(digits[0], np.random.default_rng(1))
    assert events.dtype == NMNIST_DTYPE
    assert events.size > 1000
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["x"].min() >= 0 and events["x"].max() <= 33
    assert events["y"].min() >= 0 and events["y"].max() <= 33
    assert set(np.unique(events["p"])) == {0, 1}
    assert 0 <= events["t"][0] and events["t"][-1] <= DEFAULT_PARAMS.duration_ms * 1000
    again = emulate_recording(digits[0], np.random.default_rng(1))
    np.testing.assert_array_equal(events, again)
    other = emulate_recording(digits[0], np.random.default_rng(2))
    assert other.size != events.size or not np.array_equal(other, events)


def test_bad_parameters_are_config_errors(digits):
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="unknown emulator parameter"):
        emulate_recording(digits[0], rng, treshold=0.3)
    with pytest.raises(ConfigError, match="threshold must be > 0"):
        emulate_recording(digits[0], rng, threshold=0.0)
    with pytest.raises(ConfigError, match="fit the 34 x 34 sensor"):
        emulate_recording(np.zeros((40, 40)), rng)
    with pytest.raises(TypeError):
        emulate_recording(digits[0], 0)


# --- physics -----------------------------------------------------------------------------------

def test_blank_image_gives_only_noise_at_the_configured_rate():
    rate_hz, duration_ms = 40.0, 300.0
    events = emulate_recording(np.zeros((28, 28)), np.random.default_rng(4),
                               noise_rate_hz=rate_hz, duration_ms=duration_ms)
    expected = N_PIXELS * rate_hz * duration_ms / 1000.0  # 13,872
    assert abs(events.size - expected) < 5 * math.sqrt(expected)
    assert abs(events["p"].mean() - 0.5) < 0.02
    per_pixel = np.bincount(events["y"] * 34 + events["x"], minlength=N_PIXELS)
    assert abs(per_pixel.var() / per_pixel.mean() - 1.0) < 0.2  # Poisson: variance = mean
    early = np.count_nonzero(events["t"] < duration_ms * 500)  # first half of the time
    assert abs(early / events.size - 0.5) < 0.02
    silent = emulate_recording(np.zeros((28, 28)), np.random.default_rng(4), noise_rate_hz=0.0)
    assert silent.size == 0


def test_static_scene_gives_no_events(digits):
    still = dict(saccades=(), tremor_px=0.0)
    events = emulate_recording(digits[0], np.random.default_rng(5), noise_rate_hz=0.0, **still)
    assert events.size == 0
    noisy = emulate_recording(digits[0], np.random.default_rng(5), **still)
    expected = N_PIXELS * DEFAULT_PARAMS.noise_rate_hz * DEFAULT_PARAMS.duration_ms / 1000.0
    assert noisy.size < expected + 5 * math.sqrt(expected)


def test_there_and_back_motion_balances_on_and_off(digits):
    there_and_back = (Saccade(0.0, 50.0, 3.0, 1.0), Saccade(60.0, 110.0, -3.0, -1.0))
    events = emulate_recording(digits[2], np.random.default_rng(6), saccades=there_and_back,
                               duration_ms=120.0, tremor_px=0.0, noise_rate_hz=0.0,
                               threshold_mismatch=0.0)
    assert events.size > 500
    assert abs(events["p"].mean() - 0.5) < 0.02
    # Each pixel ends at the level it started from: its ON and OFF counts differ by <= 1.
    pixel = events["y"] * 34 + events["x"]
    n_on = np.bincount(pixel[events["p"] == 1], minlength=N_PIXELS)
    n_off = np.bincount(pixel[events["p"] == 0], minlength=N_PIXELS)
    assert np.abs(n_on - n_off).max() <= 1
    # And the first leg (moving right) fires where the second leg fires the other polarity.
    first = events["t"] < 55_000
    assert abs(first.mean() - 0.5) < 0.1


def test_three_bursts_in_time(digits):
    times_ms = np.concatenate([emulate_recording(image, np.random.default_rng(i))["t"]
                               for i, image in enumerate(digits[:8])]) / 1000.0
    rate = np.histogram(times_ms, np.arange(0.0, 310.0, 10.0))[0]
    bursts = [rate[2:8].max(), rate[11:18].max(), rate[23:29].max()]  # 20-80, 110-180, 230-290
    gaps = [rate[8:11].mean(), rate[19:22].mean()]  # 80-110, 190-220 ms
    assert min(bursts) > 4 * max(gaps)
    assert max(bursts) < 1.6 * min(bursts)
    dx_px, dy_px = saccade_path([0, 300_000], DEFAULT_PARAMS.saccades)
    assert abs(dx_px[1]) < 0.1 and abs(dy_px[1]) < 0.1  # a closed triangle


def test_statistics_match_real_recordings_of_the_same_digits(digits):
    real = load_nmnist(SHARED_NMNIST, validation_fraction=0.2)
    recordings = {int(i): real.train_events[k] for k, i in enumerate(real.train_ids)}
    recordings.update({int(i): real.test_events[k] for k, i in enumerate(real.test_ids)})
    ids = np.arange(1, 51)
    real_n = np.array([recordings[i].size for i in ids])
    real_on = np.mean([recordings[i]["p"].mean() for i in ids])
    emulated = [emulate_recording(digits[i - 1], np.random.default_rng(int(i))) for i in ids]
    emulated_n = np.array([e.size for e in emulated])
    assert abs(np.median(emulated_n) / np.median(real_n) - 1.0) < 0.3
    assert abs(np.mean([e["p"].mean() for e in emulated]) - real_on) < 0.05
    assert np.corrcoef(emulated_n, real_n)[0, 1] > 0.5  # busier digits give more events
    durations_ms = [(e["t"][-1] - e["t"][0]) / 1000.0 for e in emulated]
    assert 290.0 < np.median(durations_ms) < 315.0  # real: 291 .. 314, median 306


# --- data set and training -----------------------------------------------------------------------

def test_emulate_nmnist_trains_like_real_recordings(digits, shared_mnist):
    mnist = load_mnist(shared_mnist)
    data = emulate_nmnist(mnist, n_train=12, n_test=4, seed=3, threads=2)
    assert isinstance(data, NMNIST)
    assert data.origin.startswith(EMULATED_ORIGIN)
    assert len(data.train_events) == 12 and len(data.test_events) == 4
    assert np.all(np.diff(data.train_labels.astype(int)) >= 0)  # ordered by label, then id
    np.testing.assert_array_equal(data.train_labels, mnist.train_labels[data.train_ids - 1])
    k = int(np.argmax(data.train_ids == 5))
    np.testing.assert_array_equal(data.train_events[k], emulate_recording(
        mnist.train_images[4], np.random.default_rng([3, 0, 4])))
    single = emulate_nmnist(mnist, n_train=12, n_test=4, seed=3, threads=1)
    np.testing.assert_array_equal(single.test_events.t_us, data.test_events.t_us)
    config = Config(dataset="nmnist", hidden=[50], tau_mp_ms=200.0)
    task = RecordingTask(config, data)
    assert isinstance(task.train_sample(0, 0.0, np.random.default_rng(0))[0].channels, np.ndarray)
    whole, duration_ms = task.test_sample(2, np.random.default_rng(0), split="train")
    assert whole.channels.size == len(data.train_events[2])  # the whole recording, not a window
    assert duration_ms == pytest.approx(data.train_events[2]["t"][-1] / 1000)
    assert task.labels("train") is data.train_labels
    trainer = Trainer(config, data)
    trainer.train_sample()
