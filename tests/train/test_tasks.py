"""What the tasks present: test-length presentations of either split."""

import numpy as np
import pytest

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.train.tasks import ImageTask


@pytest.fixture(scope="module")
def data():
    return load_mnist(bundled=True)


def test_test_presentations_of_the_training_split_encode_the_training_digits(data):
    config = Config(hidden=[20], test_duration_ms=80.0, rate_hz=3000.0)
    task = ImageTask(config, data)
    events, duration_ms = task.test_sample(3, np.random.default_rng(9), split="train")
    expected = task.encoder.encode(data.train_images[3], 80.0, np.random.default_rng(9))
    assert duration_ms == 80.0
    np.testing.assert_array_equal(events.channels, expected.channels)
    np.testing.assert_array_equal(events.times_ms, expected.times_ms)
    test_events, _ = task.test_sample(3, np.random.default_rng(9))
    test_digit = task.encoder.encode(data.test_images[3], 80.0, np.random.default_rng(9))
    np.testing.assert_array_equal(test_events.channels, test_digit.channels)
    assert not np.array_equal(test_events.channels, events.channels)
    assert task.labels("train") is data.train_labels and task.labels("test") is data.test_labels
