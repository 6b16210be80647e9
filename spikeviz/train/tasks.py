"""What a sample is, for each kind of data: the trainer asks a task for the input events of
training sample i and of test sample i, and for the labels.

- :class:`ImageTask` (PI-MNIST and any MNIST-style image set): Poisson events from the image,
  ``rate_hz`` events per second, presentations of ``train_duration_ms`` / ``test_duration_ms``.
- :class:`RecordingTask` (N-MNIST): the camera's own events, ON and OFF as two channels
  (2 x 34 x 34 = 2,312 inputs); training presents ``window_events`` consecutive events taken at a
  random position of the recording (a new position every time it is presented), testing the
  whole recording (Sec. 6 of the paper).
"""

import numpy as np

from spikeviz.data.mnist import MNIST
from spikeviz.data.nmnist import NMNIST, events_to_channels, window
from spikeviz.encode import PoissonEncoder
from spikeviz.errors import ConfigError

PERMUTATION_STREAM = 7  # the pixel permutation comes from default_rng([seed, 7])


def pixel_permutation(config, n_pixels):
    """(n_pixels,) int: the input channel of each pixel in PI-MNIST, fixed by ``config.seed``;
    None when ``config.permute_pixels`` is off (pixel p feeds channel p)."""
    if not config.permute_pixels:
        return None
    return np.random.default_rng([config.seed, PERMUTATION_STREAM]).permutation(n_pixels)


def make_task(config, data):
    """The task for ``data`` (MNIST or NMNIST) under ``config``."""
    if isinstance(data, MNIST):
        return ImageTask(config, data)
    if isinstance(data, NMNIST):
        return RecordingTask(config, data)
    raise ConfigError(f"cannot train on {type(data).__name__}: load MNIST-style images with "
                      "spikeviz.data.load_mnist or N-MNIST recordings with load_nmnist")


class _Task:
    """What every task shares: the data set's labels."""

    def __init__(self, config, data):
        self.config = config
        self.data = data

    @property
    def train_labels(self):
        return self.data.train_labels

    @property
    def test_labels(self):
        return self.data.test_labels

    def labels(self, split):
        """Labels of the ``split`` ("test" or "train") that ``test_sample`` presents."""
        return self.train_labels if split == "train" else self.test_labels


class ImageTask(_Task):
    """Images presented as Poisson event streams."""

    def __init__(self, config, data):
        super().__init__(config, data)
        self.n_inputs = int(np.prod(data.train_images.shape[1:]))
        self.permutation = pixel_permutation(config, self.n_inputs)
        self.update()

    def update(self):
        """Take up settings changed mid-run (the input rate)."""
        self.encoder = PoissonEncoder(self.n_inputs, rate_hz=self.config.rate_hz,
                                      permutation=self.permutation)

    def train_sample(self, index, duration_ms, rng):
        """(Events, presentation length in ms) of training sample ``index``."""
        return self.encoder.encode(self.data.train_images[index], duration_ms, rng), duration_ms

    def test_sample(self, index, rng, split="test"):
        """A test presentation (``test_duration_ms``) of sample ``index`` of ``split``; the
        training split shows how well the network fits the digits it learned from."""
        images = self.data.train_images if split == "train" else self.data.test_images
        duration_ms = float(self.config.test_duration_ms)
        return self.encoder.encode(images[index], duration_ms, rng), duration_ms


class RecordingTask(_Task):
    """Event-camera recordings: event windows in training, whole recordings in testing."""

    n_inputs = 2 * 34 * 34

    def update(self):
        pass  # nothing to take up: the recordings are what they are

    def train_sample(self, index, duration_ms, rng):
        """A window of ``window_events`` events; ``duration_ms`` is unused (the window sets it)."""
        cut = window(self.data.train_events[index], int(self.config.window_events), rng)
        return events_to_channels(cut.events), max(cut.duration_ms, 1e-3)

    def test_sample(self, index, rng, split="test"):
        """The whole recording ``index`` of ``split``."""
        recordings = self.data.train_events if split == "train" else self.data.test_events
        recording = recordings[index]
        events = events_to_channels(recording)
        return events, max(float(events.times_ms[-1]) if events.times_ms.size else 0.0, 1e-3)
