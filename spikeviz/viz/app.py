"""The live training app: watch a spiking network learn, and change it while it learns.

``panel serve apps/train.py`` builds one :class:`TrainingApp` per browser session; in Jupyter,
``TrainingApp()`` displays the same app (``pn.extension(inline=True)`` offline).

One run per session
-------------------
Each session (browser tab) has its own Config, Trainer, record and worker thread: tabs never
share or corrupt a run, and closing a tab stops its worker (``pn.state.on_session_destroyed``).
So that several tabs cannot overload the machine, at most :data:`MAX_RUNNING` sessions train at
once (``SPIKEVIZ_MAX_RUNS``, default half the cores, at least one): a session started beyond it
says it is waiting and starts when another pauses or closes.  Data sets are loaded once per
process and shared read-only between sessions.

Threads
-------
- The **worker** thread owns the trainer.  It trains sample after sample while running and
  executes the button actions (step, evaluate, save, load, reset) one at a time between two
  samples, each under ``_lock``.  The numba kernels release the GIL, so the server stays
  responsive.  The worker writes numpy chunks into a :class:`spikeviz.record.TrainingRecord`
  and never touches a Bokeh or Panel model.
- Widgets change the :class:`~spikeviz.config.Config` from the server thread.  The trainer's own
  watcher marks its compiled settings stale, so a change applies at the next sample.  This app
  watches the live settings (:data:`LIVE_SETTINGS`: WTA of every layer, alpha, lambda, rho, the
  learning rates) to log each change as a marker on the accuracy curve, and ``alpha`` to rescale
  the running network's thresholds (and their floors) by new_alpha / old_alpha: the rescale is
  queued and applied between two samples, under ``_lock``.
- A periodic callback (:data:`DRAIN_PERIOD_MS`) on the server thread drains the record into the
  ``ColumnDataSource`` objects: the raster and the potentials of the newest displayed sample
  (replaced, at most ``RASTER_MAX_POINTS`` spikes) at every turn; the slower views (accuracy
  curve, histograms, receptive fields, firing, confusion matrix, status line) at most once per
  :data:`SLOW_VIEWS_PERIOD_S`: every changed plot costs the browser a redraw, and on a small
  machine the browser shares the cores with training.  The accuracy curve is a
  :class:`spikeviz.record.Thinned` series, replaced whole: at most :data:`ACCURACY_POINTS`
  points evenly spaced over the whole run, however long.
- Back-pressure: each update sets the raster figure's ``tags`` to a sequence number, and the page
  echoes it into a hidden model once it has drawn it.  While the tab has not drawn the last
  update, the periodic callback skips (the record keeps only the newest state, so the tab gets
  that when it catches up): a slow or starved tab never makes the server queue updates (it is
  sent again after :data:`ACK_TIMEOUT_S`, doubling up to :data:`ACK_TIMEOUT_MAX_S`, in case an
  echo is lost).

The worker records the spikes and potentials of at most one sample per
:data:`DISPLAY_INTERVAL_S` (the simulator records nothing for the others, so training runs at
full speed), every sample's metrics, a network snapshot every :data:`SNAPSHOT_INTERVAL_S`, and an
evaluation on ``eval_samples`` test digits at each epoch's end and whenever enough training time
has passed for it to cost at most :data:`EVAL_SHARE` of the time.

Reset (a new run with the data set, hidden sizes, optimizer and seed of the "New run" card)
asks for a confirmation first.  N-MNIST without a directory is emulated from the bundled MNIST
digits, as the CLI does.

Without a server (tests, scripts, notebooks), :meth:`TrainingApp.step`, :meth:`evaluate_now`,
:meth:`save`, :meth:`load` and :meth:`reset` run synchronously in the caller's thread when no
worker is alive, and :meth:`drain` performs one update of the views.
"""

import collections
import contextlib
import functools
import logging
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, CustomJS, Div

from spikeviz.config import NMNIST_DEFAULTS, Config
from spikeviz.data.mnist import load_mnist
from spikeviz.data.nmnist import SENSOR_HEIGHT, SENSOR_WIDTH, load_nmnist
from spikeviz.engine import Simulator
from spikeviz.engine.batch import available_cores
from spikeviz.errors import ConfigError
from spikeviz.record import Thinned, TrainingRecord
from spikeviz.train.trainer import Trainer, predictions
from spikeviz.viz import plots

__all__ = ["LIVE_SETTINGS", "MAX_RUNNING", "TrainingApp", "live_workers", "load_data"]

_log = logging.getLogger("spikeviz.app")

#: Settings that change mid-run without restarting (the trainer reads them at the next sample).
LIVE_SETTINGS = ("kappa_hidden", "kappa_deeper", "kappa_output", "alpha", "lam", "rho", "eta_w",
                 "eta_th")
#: Period of the view update of the raster and the potentials, ms.
DRAIN_PERIOD_MS = 250
#: The slower views (accuracy curve, histograms, receptive fields, firing, confusion, status)
#: update at most this often, seconds: each update of a plot costs the browser a redraw.
SLOW_VIEWS_PERIOD_S = 1.0
#: At most one sample per this many seconds has its spikes and potentials recorded and shown.
DISPLAY_INTERVAL_S = DRAIN_PERIOD_MS / 1000
#: A network snapshot (thresholds, receptive fields, firing) at most this often, seconds.
SNAPSHOT_INTERVAL_S = SLOW_VIEWS_PERIOD_S
#: A tab gets its next update only once it has drawn the previous one, or after this long
#: (doubling while it stays silent, up to ``ACK_TIMEOUT_MAX_S``): a slow tab skips updates
#: instead of making the server queue them.
ACK_TIMEOUT_S = 2.0
ACK_TIMEOUT_MAX_S = 60.0
#: Evaluations take at most this share of the training time (and run at least 10 s apart).
EVAL_SHARE = 0.05
MIN_EVAL_INTERVAL_S = 10.0
#: Spikes stored per displayed sample: hidden and output layers, and input events.
RASTER_MAX_POINTS = 50_000
#: Rows the potential recording keeps per displayed sample.
POTENTIAL_CAPACITY = 50_000
#: Points of the accuracy curve on the page, evenly spaced over the whole run (thinned as it
#: grows): the browser redraws it once a second whatever the length of the run.
ACCURACY_POINTS = 2_000
#: Test points and markers kept on the curve.
MARKER_ROLLOVER = 1_000
#: Samples per moving average of the running accuracy and loss.
RUNNING_WINDOW = 200
#: Sessions that may train at the same time in one server process.
MAX_RUNNING = max(1, int(os.environ.get("SPIKEVIZ_MAX_RUNS", 0)) or available_cores() // 2)
_RUN_SLOTS = threading.BoundedSemaphore(MAX_RUNNING)

BUNDLED = "bundled MNIST (offline)"
MNIST_DIR = "MNIST-style directory"
NMNIST_DIR = "N-MNIST (directory, or emulated)"
DATASETS = {BUNDLED: "mnist", MNIST_DIR: "mnist", NMNIST_DIR: "nmnist"}  # choice -> kind


# --- data, shared read-only between sessions ---

_DATA_CACHE = collections.OrderedDict()
_DATA_LOCK = threading.Lock()


def live_workers():
    """Training worker threads alive in this process (one per open session that started)."""
    return sum(isinstance(thread, _Worker) and thread.is_alive()
               for thread in threading.enumerate())


def load_data(dataset=BUNDLED, data_dir="", n_train=None, n_test=None):
    """The data set of a choice in the app, loaded once per process (two kept).

    N-MNIST without a directory is emulated, as by the CLI: the saccade sensor emulator records
    the bundled MNIST digits (the first ``n_train`` and ``n_test`` of them; default all, about
    half a minute on 2 cores).
    """
    data_dir = str(data_dir).strip()
    emulated = dataset == NMNIST_DIR and not data_dir
    key = (dataset, "" if dataset == BUNDLED else data_dir,
           (n_train, n_test) if emulated else None)
    with _DATA_LOCK:
        if key in _DATA_CACHE:
            _DATA_CACHE.move_to_end(key)
            return _DATA_CACHE[key]
    if dataset == MNIST_DIR and not data_dir:
        raise ConfigError(f"{dataset}: enter the data directory (the four IDX files)")
    if dataset == MNIST_DIR:
        data = load_mnist(Path(data_dir).expanduser(), download=False)
    elif emulated:
        from spikeviz.data import emulate_nmnist  # compiles its kernel: only when needed

        data = emulate_nmnist(load_mnist(bundled=True), n_train=n_train, n_test=n_test)
    elif dataset == NMNIST_DIR:
        data = load_nmnist(Path(data_dir).expanduser(), skip_bad=True)
    else:
        data = load_mnist(bundled=True)
    with _DATA_LOCK:
        _DATA_CACHE[key] = data
        while len(_DATA_CACHE) > 2:
            _DATA_CACHE.popitem(last=False)
    return data


class _RememberingTask:
    """The trainer's task, keeping the last training sample's (events, end_ms): the input
    spikes to show."""

    def __init__(self, inner):
        self.inner = inner
        self.last = None

    def train_sample(self, index, duration_ms, rng):
        self.last = self.inner.train_sample(index, duration_ms, rng)
        return self.last

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _input_images(weights, task, data):
    """(K, H, W) images of K rows of input weights: the image's pixels for image tasks (undoing
    a pixel permutation), ON minus OFF weights of each sensor pixel for event-camera data."""
    images = getattr(data, "train_images", None)
    if images is not None:
        permutation = getattr(task, "permutation", None)
        if permutation is not None:
            weights = weights[:, permutation]  # pixel p feeds channel permutation[p]
        return weights.reshape(len(weights), *images.shape[1:])
    off_on = weights.reshape(len(weights), 2, SENSOR_HEIGHT, SENSOR_WIDTH)
    return off_on[:, 1] - off_on[:, 0]


def _fmt(value):
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_fmt, value)) + "]"
    return "default" if value is None else f"{value:g}"


def _default_rates(optimizer, eta_w=None):
    """(eta_w, eta_th) an optimizer uses by default (eta_th for a given eta_w)."""
    return Config(optimizer=optimizer, eta_w=eta_w).learning_rates(0)[:2]


def _parse_hidden(text):
    try:
        sizes = [int(part) for part in str(text).replace(",", " ").split()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"hidden layer sizes must be positive integers such as '800' or "
                          f"'500, 500', got {text!r}")
    return sizes


def _acknowledgement(figure):
    """A model the page sets to ``figure.tags`` once it has drawn the update that changed them
    (the next animation frame): the server reads it to know how far behind the tab is."""
    ack = Div(name="drain_ack", tags=[0], visible=False)
    figure.js_on_change("tags", CustomJS(args={"ack": ack}, code=(
        "const seq = cb_obj.tags[0];"
        "requestAnimationFrame(() => { ack.tags = [seq]; });")))
    return ack


class _Worker(threading.Thread):
    """The thread that owns a session's trainer: trains while running, runs queued tasks."""

    def __init__(self, app):
        super().__init__(daemon=True, name="spikeviz-training")
        self.app = app
        self.cond = threading.Condition()
        self.tasks = collections.deque()
        self.running = False
        self.stopped = False
        self.has_slot = False
        self.waiting = False  # running, but every training slot is taken

    def submit(self, task):
        with self.cond:
            self.tasks.append(task)
            self.cond.notify()

    def set_running(self, running):
        with self.cond:
            self.running = running
            self.cond.notify()

    def stop(self):
        with self.cond:
            self.stopped, self.running = True, False
            self.cond.notify()

    def should_yield(self):
        """True when the training slice should end: paused, stopped or a task is waiting."""
        return self.stopped or not self.running or bool(self.tasks)

    def run(self):
        try:
            while True:
                with self.cond:
                    while not (self.stopped or self.tasks or self.running):
                        self._release_slot()
                        self.cond.wait()
                    if self.stopped:
                        return
                    task = self.tasks.popleft() if self.tasks else None
                if task is not None:
                    self.app._guarded(task)
                    continue
                if not self.has_slot:
                    self.has_slot = _RUN_SLOTS.acquire(timeout=0.5)
                    self.waiting = not self.has_slot
                    if not self.has_slot:
                        continue
                self.app._guarded(self.app._train_slice)
        finally:
            self._release_slot()

    def _release_slot(self):
        self.waiting = False
        if self.has_slot:
            _RUN_SLOTS.release()
            self.has_slot = False


class TrainingApp(pn.viewable.Viewer):
    """Train a spiking network and watch it learn: raster, potentials, thresholds, curves.

    Parameters
    ----------
    config : Config, optional; the live widgets bind to it (default: ``Config()``)
    data : MNIST, optional; default: the data set chosen by ``dataset`` (bundled MNIST)
    """

    dataset = param.Selector(default=BUNDLED, objects=list(DATASETS),
                             doc="data set of the next run (applied by Reset)")
    data_dir = param.String(default="", doc="directory of the data set (not for bundled MNIST;"
                                            " N-MNIST without one is emulated)")
    hidden = param.String(default="800", doc="hidden layer sizes of the next run, e.g. '500, 500'")
    optimizer = param.Selector(default="adam", objects=["adam", "sgd"],
                               doc="optimizer of the next run")
    seed = param.Integer(default=0, bounds=(0, None), doc="seed of the next run")
    checkpoint = param.String(default="runs/app/last.npz",
                              doc="checkpoint file for Save and Load (the CLI's format)")
    watch_hidden = param.List(default=[0, 1, 2, 3], item_type=int,
                              doc="first-hidden-layer neurons whose potentials are shown")
    eval_samples = param.Integer(default=200, bounds=(1, None),
                                 doc="test digits per evaluation")
    auto_evaluate = param.Boolean(default=True,
                                  doc="evaluate at epoch ends and periodically while training")

    def __init__(self, config=None, data=None, **params):
        super().__init__(**params)
        self.config = config if config is not None else Config()
        self._quiet = False  # set while the app itself rewrites the config (load, reset)
        self._lock = threading.RLock()  # held by whoever runs the trainer
        self._pending = collections.deque()  # actions for the next sample boundary
        self._worker = None
        self._callback = None
        self._notices = collections.deque(maxlen=20)
        self.message = ""  # the last notice, for tests and notebooks
        self.trainer = None
        self.data = data if data is not None else load_data(self.dataset, self.data_dir)
        self.param.update(hidden=", ".join(str(n) for n in self.config.hidden),
                          optimizer=self.config.optimizer, seed=self.config.seed)
        self._concrete_learning_rate()
        self._install(Trainer(self.config, self.data))
        self.config.param.watch(self._on_live_change, list(LIVE_SETTINGS))
        self.param.watch(self._on_watch_change, ["watch_hidden"])
        self._build_views()

    # --- the trainer and its recording ---

    def _install(self, trainer):
        """Make ``trainer`` the session's run: recording, fresh record, first snapshot."""
        old = self.trainer
        if old is not None:
            for watchers in self.config.param.watchers.values():
                for watcher in list(watchers.get("value", [])):
                    if watcher.fn == old._mark_stale:
                        self.config.param.unwatch(watcher)
        if not isinstance(trainer.task, _RememberingTask):
            trainer.task = _RememberingTask(trainer.task)
        self.trainer = trainer
        self._pending.clear()  # e.g. a rescale meant for the previous network
        self._silent_recording = trainer.sim.recording  # capacity 0: records nothing
        self._build_recording()
        self.record = TrainingRecord(meta={"sizes": trainer.network.sizes})
        self._sample_count = trainer.epoch * trainer.n_train + trainer.position
        self._metric_rows = {name: [] for name in ("sample", "epoch", "correct", "loss",
                                                   "train_accuracy", "mean_loss")}
        self._running_accuracy = self._running_loss = 0.0
        self._running_n = 0
        self._last_display = self._last_snapshot = -math.inf
        self._train_seconds_since_eval, self._eval_seconds = 0.0, 0.0
        for metrics in trainer.history:  # the test curve of a loaded run
            if "test_accuracy" in metrics:
                self.record.tests.append(sample=metrics["epoch"] * trainer.n_train,
                                         test_accuracy=metrics["test_accuracy"],
                                         n_samples=metrics.get("test_samples", 0))
        self._publish_network()

    def _build_recording(self):
        """The recording of displayed samples: every spike, and the watched potentials."""
        sizes = self.trainer.network.sizes
        hidden = [n for n in self.watch_hidden if 0 <= n < sizes[1]]
        n_layers = len(sizes) - 1
        self._watch = [(0, n) for n in hidden] + [(n_layers - 1, n) for n in range(sizes[-1])]
        first = "hidden" if n_layers == 2 else "hidden 1"
        self._watch_labels = [f"{first} #{n}" for n in hidden] + [
            f"output {n}" for n in range(sizes[-1])]
        self._recording = Simulator(self.trainer.network, watch=self._watch,
                                    spike_capacity=RASTER_MAX_POINTS,
                                    potential_capacity=POTENTIAL_CAPACITY).recording

    def _concrete_learning_rate(self):
        """Give eta_w and eta_th numbers (their defaults) so that their widgets can show them."""
        config = self.config
        if config.eta_w is None or config.eta_th is None:
            with self._quietly():
                eta_w, eta_th = _default_rates(config.optimizer, config.eta_w)
                config.param.update(eta_w=eta_w if config.eta_w is None else config.eta_w,
                                    eta_th=eta_th if config.eta_th is None else config.eta_th)

    @contextlib.contextmanager
    def _quietly(self):
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    # --- settings changed mid-run ---

    def _on_live_change(self, *events):
        if self._quiet:
            return
        for event in events:
            if event.name == "alpha" and event.old and event.new:
                self._pending.append(functools.partial(self._rescale_thresholds,
                                                       event.new / event.old))
            self.record.markers.append(sample=self._sample_count,
                                       text=f"{event.name} {_fmt(event.old)} -> "
                                            f"{_fmt(event.new)}")
        if self._pending and self._lock.acquire(blocking=False):
            try:  # nobody is training: apply now (else the next sample boundary does)
                self._apply_pending()
            finally:
                self._lock.release()

    def _on_watch_change(self, event):
        self._pending.append(self._build_recording)
        if self._lock.acquire(blocking=False):
            try:
                self._apply_pending()
            finally:
                self._lock.release()

    def _apply_pending(self):
        while self._pending:
            self._pending.popleft()()

    def _rescale_thresholds(self, factor):
        """alpha changed: thresholds and floors follow, as if initialized with the new alpha."""
        network = self.trainer.network
        network.flat_thresholds *= factor
        network.threshold_floors *= factor
        self._last_snapshot = -math.inf  # show the new thresholds at once

    # --- training (in the worker, or in the caller without one) ---

    def _train_one(self, display=False):
        """Train one sample, record what the views need; True at an epoch's end."""
        with self._lock:
            self._apply_pending()
            trainer = self.trainer
            if trainer.position >= trainer.n_train:
                self._end_epoch()
            start = time.perf_counter()
            display = display or start - self._last_display >= DISPLAY_INTERVAL_S
            recording = self._recording if display else self._silent_recording
            if trainer.sim.recording is not recording:
                trainer.sim.recording = recording
            label, predicted, loss = trainer.train_sample()
            elapsed = time.perf_counter() - start
            trainer.tally["seconds"] += elapsed
            self._train_seconds_since_eval += elapsed
            self._sample_count += 1
            self._add_metrics(label, predicted, loss)
            if display:
                self._last_display = start
                self._record_sample(label, predicted)
            if trainer.position % 1000 == 0:
                trainer.check_health()
            if trainer.position >= trainer.n_train:
                self._end_epoch()
            elif start - self._last_snapshot >= SNAPSHOT_INTERVAL_S:
                self._publish_network()
            if self.auto_evaluate and self._train_seconds_since_eval >= max(
                    MIN_EVAL_INTERVAL_S, self._eval_seconds / EVAL_SHARE):
                self._evaluate()

    def _train(self, n):
        """Train ``n`` samples; the last one is always displayed."""
        for i in range(n):
            self._train_one(display=i == n - 1)
        with self._lock:
            self._flush_metrics()
            self._publish_network()

    def _train_slice(self, seconds=0.05):
        """Train for about ``seconds`` or until paused (the worker's unit of work)."""
        deadline = time.perf_counter() + seconds
        worker = self._worker
        while time.perf_counter() < deadline and not (worker and worker.should_yield()):
            self._train_one()
        with self._lock:
            self._flush_metrics()

    def _add_metrics(self, label, predicted, loss):
        self._running_n += 1
        rate = max(1.0 / self._running_n, 1.0 / RUNNING_WINDOW)
        correct = int(predicted == label)
        self._running_accuracy += (correct - self._running_accuracy) * rate
        self._running_loss += (loss - self._running_loss) * rate
        rows = self._metric_rows
        rows["sample"].append(self._sample_count)
        rows["epoch"].append(self.trainer.epoch)
        rows["correct"].append(correct)
        rows["loss"].append(loss)
        rows["train_accuracy"].append(self._running_accuracy)
        rows["mean_loss"].append(self._running_loss)

    def _flush_metrics(self):
        rows = self._metric_rows
        if rows["sample"]:
            self.record.metrics.append(**rows)
            for values in rows.values():
                values.clear()

    def _record_sample(self, label, predicted):
        """Spikes (input events included) and watched potentials of the sample just trained."""
        trainer, record = self.trainer, self.record
        t_ms, layer, neuron = trainer.sim.recorded_spikes()
        events, end_ms = trainer.task.last
        room = max(0, RASTER_MAX_POINTS - t_ms.size)
        input_t = events.times_ms[:room]
        spikes_start = record.spikes.total
        spikes_stop = record.spikes.append(
            sample=np.full(input_t.size + t_ms.size, self._sample_count),
            t_ms=np.concatenate([input_t, t_ms]),
            layer=np.concatenate([np.zeros(input_t.size, np.int16), layer + 1]),
            neuron=np.concatenate([events.channels[:room], neuron]),
        )
        p_ms, watch, v_peak, v_end = trainer.sim.recorded_potentials()
        thresholds = np.array([trainer.network.thresholds[lay][n] for lay, n in self._watch],
                              np.float32)
        potentials_start = record.potentials.total
        potentials_stop = record.potentials.append(
            sample=np.full(p_ms.size, self._sample_count), t_ms=p_ms, watch=watch,
            v_peak=v_peak, v_end=v_end, threshold=thresholds[watch],
        )
        record.samples.append(
            sample=self._sample_count, label=label, predicted=predicted,
            duration_ms=end_ms,
            n_spikes=int(self._recording.seen[0]) + events.times_ms.size,
            spikes_start=spikes_start, spikes_stop=spikes_stop,
            potentials_start=potentials_start, potentials_stop=potentials_stop,
        )

    def _publish_network(self):
        """Snapshot of thresholds, receptive fields and firing statistics for the views."""
        trainer = self.trainer
        self._last_snapshot = time.perf_counter()
        network, scale = trainer.network, trainer.sim.state.scale
        neurons = self._field_neurons()
        weights = network.weights[0][:, neurons] * scale[neurons]  # layer 0 starts at neuron 0
        stats = trainer.firing_statistics()
        self.record.network.publish({
            "sample": self._sample_count,
            "names": plots.layer_names(network.sizes)[1:],
            "thresholds": [t.copy() for t in network.thresholds],
            "fields": _input_images(weights.T, trainer.task, self.data),
            "field_neurons": neurons,
            "rates": stats["spikes_per_neuron_per_sample"],
            "dead": stats["dead_fraction"],
        })

    def _field_neurons(self, count=12):
        """Hidden neurons whose receptive fields are shown: the watched ones, then the first."""
        size = self.trainer.network.sizes[1]
        chosen = [n for n in self.watch_hidden if 0 <= n < size]
        chosen += [n for n in range(size) if n not in chosen][:max(0, count - len(chosen))]
        return chosen[:count]

    def _end_epoch(self):
        self._flush_metrics()
        metrics = self.trainer.finish_epoch(evaluate=False)
        self.record.markers.append(sample=self._sample_count,
                                   text=f"epoch {metrics['epoch']} done")
        if self.auto_evaluate:
            metrics.update(self._evaluate())  # the history entry: saved with checkpoints
        self._publish_network()

    def _evaluate(self, n_samples=None):
        """Test accuracy and confusion matrix on the first ``n_samples`` test samples (all
        cores)."""
        with self._lock:
            trainer = self.trainer
            self._flush_metrics()
            start = time.perf_counter()
            result = trainer.evaluate(n_samples or self.eval_samples)
            counts, labels = trainer.last_test
            self._eval_seconds = time.perf_counter() - start
            self._train_seconds_since_eval = 0.0
            self.record.tests.append(sample=self._sample_count,
                                     test_accuracy=result["test_accuracy"],
                                     n_samples=result["test_samples"])
            self.record.evaluation.publish({
                "sample": self._sample_count, "labels": labels, "predicted": predictions(counts),
                "accuracy": result["test_accuracy"]})
            return {"test_accuracy": result["test_accuracy"],
                    "test_samples": result["test_samples"]}

    def _save(self, path=None):
        path = Path(path or self.checkpoint).expanduser()
        with self._lock:
            self._flush_metrics()
            self.trainer.save(path)
        self._notify(f"saved the run to {path} (epoch {self.trainer.epoch + 1}, sample "
                     f"{self.trainer.position:,})")

    def _load(self, path=None):
        """Continue the run saved in ``path`` (a CLI or app checkpoint), with its settings."""
        path = Path(path or self.checkpoint).expanduser()
        with self._lock:
            probe = Trainer.resume(path, self.data)  # refuses a bad file before touching anything
            saved = probe.config.to_dict()
            del probe
            with self._quietly():
                self.config.update_from(saved, source=str(path))
                self._concrete_learning_rate()
                self.param.update(hidden=", ".join(str(n) for n in self.config.hidden),
                                  optimizer=self.config.optimizer, seed=self.config.seed)
            trainer = Trainer.resume(path, self.data, config=self.config)
            note = ""
            if len(trainer.order) != trainer.n_train:
                trainer._start_epoch()  # its sample order belongs to another data set
                note = (f"; its epoch order was for {len(trainer.order):,} training samples, "
                        f"not this data set's {trainer.n_train:,}: the epoch starts over")
            self._install(trainer)
        self._notify(f"loaded {path}: epoch {trainer.epoch + 1}, sample {trainer.position:,}"
                     + note)

    def _reset(self):
        """A new run with the next-run settings (data set, hidden sizes, optimizer, seed)."""
        with self._lock:
            hidden = _parse_hidden(self.hidden)
            if self.dataset == NMNIST_DIR and not self.data_dir.strip():
                self._notify("no N-MNIST directory: emulating recordings of the bundled MNIST "
                             "digits with the saccade sensor emulator (about half a minute)")
            data = load_data(self.dataset, self.data_dir, self.config.train_samples,
                             self.config.test_samples)
            with self._quietly():
                # a learning rate keeps a number the user chose, else follows the defaults
                config = self.config
                default_w = config.eta_w == _default_rates(config.optimizer)[0]
                default_th = config.eta_th == _default_rates(config.optimizer, config.eta_w)[1]
                values = {"hidden": hidden, "optimizer": self.optimizer, "seed": self.seed,
                          "dataset": DATASETS[self.dataset]}
                if values["dataset"] != self.config.dataset:  # the other kind's time constant
                    values["tau_mp_ms"] = (NMNIST_DEFAULTS["tau_mp_ms"]
                                           if values["dataset"] == "nmnist"
                                           else Config.param.tau_mp_ms.default)
                config.update_from(values, source="new run")
                if default_w:
                    config.eta_w = _default_rates(config.optimizer)[0]
                if default_th:
                    config.eta_th = _default_rates(config.optimizer, config.eta_w)[1]
            self.data = data
            self._install(Trainer(self.config, data))
        self._notify(f"new run: {self.trainer.n_inputs}-"
                     f"{'-'.join(map(str, self.config.hidden))}-10, {self.config.optimizer}, "
                     f"seed {self.config.seed}, {data.origin}")

    def _notify(self, text, kind="info"):
        self.message = text
        self._notices.append((kind, text))
        (_log.warning if kind == "danger" else _log.info)("%s", text)

    def _guarded(self, task):
        """Run a task; an error pauses training and is shown, the app stays usable."""
        try:
            task()
        except Exception as error:  # noqa: BLE001: any fault must reach the page
            if self._worker is not None:
                self._worker.set_running(False)
            _log.exception("training task failed")
            self._notify(f"{type(error).__name__}: {error}. Training is paused.", "danger")

    # --- public actions ---

    def _do(self, task, guarded):
        worker = self._worker
        if worker is not None and worker.is_alive():
            worker.submit(task)
        elif guarded:
            self._guarded(task)
        else:
            task()

    def step(self, n=1):
        """Train ``n`` samples (queued to the worker if it is alive, else here and now)."""
        self._do(functools.partial(self._train, n), guarded=False)

    def evaluate_now(self, n_samples=None):
        """Evaluate on ``n_samples`` (default ``eval_samples``) test digits."""
        self._do(functools.partial(self._evaluate, n_samples), guarded=False)

    def save(self, path=None):
        self._do(functools.partial(self._save, path), guarded=False)

    def load(self, path=None):
        self._do(functools.partial(self._load, path), guarded=False)

    def reset(self):
        self._do(self._reset, guarded=False)

    def start(self):
        """Train continuously in the worker thread (started with the views if needed)."""
        self.open()
        self._worker.set_running(True)

    def pause(self):
        if self._worker is not None:
            self._worker.set_running(False)

    @property
    def running(self):
        return self._worker is not None and self._worker.running

    def open(self):
        """Start the worker thread (idle) and the periodic view update."""
        if self._worker is None or not self._worker.is_alive():
            self._worker = _Worker(self)
            self._worker.start()
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self._periodic_drain,
                                                            period=DRAIN_PERIOD_MS)

    def close(self, timeout=None):
        """Stop the worker (after its current sample or task) and the view updates."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            if timeout:
                worker.join(timeout)
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def attach_session(self):
        """In a served session: open on page load, close when the session ends."""
        pn.state.onload(self.open)
        if pn.state.curdoc is not None:
            pn.state.on_session_destroyed(lambda session_context: self.close())

    # --- views ---

    def _build_views(self):
        sizes = self.trainer.network.sizes
        duration = self.config.duration_ms(self.trainer.epoch)
        names = plots.layer_names(sizes)
        self._figures = {
            "raster": plots.raster_figure(sizes, duration),
            "potentials": plots.potentials_figure(self._watch_labels, duration),
            "accuracy": plots.accuracy_figure(),
            "thresholds": plots.threshold_histogram_figure(),
            "receptive_fields": plots.receptive_fields_figure(self._field_neurons()),
            "firing": plots.firing_figure(names[1:]),
            "confusion": plots.confusion_figure(),
        }
        self.sources = {}
        for fig in self._figures.values():
            for source in fig.select({"type": ColumnDataSource}):
                if source.name:
                    self.sources[source.name] = source
        self._reader = None
        self._ack = _acknowledgement(self._figures["raster"])
        self._update_seq, self._sent_at, self._ack_timeout = 0, 0.0, ACK_TIMEOUT_S
        self._slow_views_at = -math.inf
        self.skipped_updates = 0  # periodic updates a slow tab made the server skip
        self._shown_state = None
        self._drawn_activity = None
        self._speed = (time.perf_counter(), self._sample_count, 0.0)
        self._status = pn.pane.Markdown("", css_classes=["status"], margin=(0, 10))
        self._progress = pn.indicators.Progress(value=0, max=max(self.trainer.n_train, 1),
                                                width=280, css_classes=["progress"])
        self._alert = pn.pane.Alert("", alert_type="info", visible=False, width=280)
        self._deeper_kappas = pn.Column(*self._deeper_kappa_sliders(), margin=0)
        self._confirm_reset = self._build_reset_confirmation()
        self._layout = self._build_layout()
        self._update_status()

    def _build_layout(self):
        widgets = pn.widgets

        def button(label, handler, kind="default", css=None):
            b = widgets.Button(label=label, color=kind, width=85,
                               css_classes=[css or label.lower().replace(" ", "-") + "-button"])
            b.on_click(lambda event: handler())
            return b

        def queued(action):
            return lambda: self._do(action, guarded=True)

        def step_once():
            self.pause()
            self._do(functools.partial(self._train, 1), guarded=True)

        c = self.config.param
        live = [
            widgets.FloatSlider.from_param(c.kappa_hidden, step=0.05, throttled=True,
                                           label="kappa_hidden (hidden WTA)",
                                           css_classes=["kappa-hidden"], width=260),
            widgets.FloatSlider.from_param(c.kappa_output, step=0.05, throttled=True,
                                           label="kappa_output (output WTA)",
                                           css_classes=["kappa-output"], width=260),
            widgets.FloatSlider.from_param(c.alpha, step=0.1, throttled=True,
                                           label="alpha (thresholds)", css_classes=["alpha"],
                                           width=260),
            widgets.FloatInput.from_param(c.lam, step=5e-4, label="lambda (weight reg.)",
                                          css_classes=["lam"], width=260),
            widgets.FloatInput.from_param(c.rho, step=1e-5, label="rho (threshold reg.)",
                                          css_classes=["rho"], width=260),
            widgets.FloatInput.from_param(c.eta_w, step=1e-4, label="eta_w (learning rate)",
                                          css_classes=["eta-w"], width=260),
            widgets.FloatInput.from_param(c.eta_th, step=1e-4,
                                          label="eta_th (threshold learning rate)",
                                          css_classes=["eta-th"], width=260),
        ]
        live.insert(1, self._deeper_kappas)
        controls = pn.Column(
            pn.pane.Markdown("## spikeviz\nWatch a spiking network learn."),
            self._status, self._progress,
            pn.Row(button("Start", self.start, "success"), button("Pause", self.pause, "warning"),
                   button("Step", step_once)),
            pn.Row(button("Reset", self.ask_reset, "danger"),
                   button("Evaluate now", queued(self._evaluate), "primary",
                          css="evaluate-button")),
            self._confirm_reset,
            self._alert,
            pn.Card(*live, title="Live settings (apply at the next sample)", width=290),
            pn.Card(
                widgets.TextInput.from_param(self.param.checkpoint, label="checkpoint file",
                                             css_classes=["checkpoint-path"], width=260),
                pn.Row(button("Save", queued(self._save)), button("Load", queued(self._load))),
                title="Checkpoint", width=290,
            ),
            pn.Card(
                pn.Param(self.param, parameters=["dataset", "data_dir", "hidden", "optimizer",
                                                 "seed"], show_name=False, width=260),
                pn.pane.Markdown("Applied by **Reset**, which starts a new run (after a "
                                 "confirmation)."),
                title="New run", width=290, collapsed=True,
            ),
            pn.Card(
                pn.Param(self.param, parameters=["watch_hidden", "eval_samples",
                                                 "auto_evaluate"], show_name=False, width=260),
                title="Views", width=290, collapsed=True,
            ),
            width=300,
        )
        f = {name: pn.pane.Bokeh(fig) for name, fig in self._figures.items()}
        plots_column = pn.Column(
            pn.Row(f["raster"], f["accuracy"]),
            pn.Row(f["potentials"], pn.Column(f["thresholds"], f["firing"])),
            pn.Row(f["receptive_fields"], f["confusion"]),
        )
        return pn.Row(controls, plots_column)

    def _deeper_kappa_sliders(self):
        """A WTA slider for each hidden layer after the first (``kappa_deeper``, as the CLI's
        ``--wta``), for the network of the current run."""
        deeper = self.config.kappas()[1:-1][:len(self.trainer.network.sizes) - 3]
        sliders = []
        for k, kappa in enumerate(deeper):
            slider = pn.widgets.FloatSlider(
                label=f"kappa hidden {k + 2} (WTA)", start=-1.0, end=0.0, step=0.05,
                value=float(kappa), css_classes=[f"kappa-hidden-{k + 2}"], width=260)
            # on release, as the other sliders: not at every step of a drag
            slider.param.watch(functools.partial(self._set_deeper_kappa, k), "value_throttled")
            sliders.append(slider)
        return sliders

    def _set_deeper_kappa(self, k, event):
        kappas = list(self.config.kappas()[1:-1])
        kappas[k] = float(event.new)
        self.config.kappa_deeper = kappas  # a new list: the watchers see the change

    def _build_reset_confirmation(self):
        text = pn.pane.Markdown("", css_classes=["reset-question"], width=270, margin=(0, 5))
        yes = pn.widgets.Button(label="Discard the run and reset", color="danger",
                                css_classes=["confirm-reset-button"], width=180)
        no = pn.widgets.Button(label="Cancel", css_classes=["cancel-reset-button"], width=80)
        yes.on_click(lambda event: self.confirm_reset())
        no.on_click(lambda event: self.cancel_reset())
        return pn.Column(text, pn.Row(yes, no), visible=False, css_classes=["confirm-reset"],
                         width=290)

    def ask_reset(self):
        """What Reset does: say what the new run will be, and wait for a confirmation."""
        question = self._confirm_reset[0]
        question.object = (
            f"**Start a new run?** {self.hidden.replace(' ', '')} hidden, {self.optimizer}, "
            f"seed {self.seed}, {self.dataset}. The current run (epoch {self.trainer.epoch + 1}"
            f", sample {self.trainer.position:,}) is discarded unless saved.")
        self._confirm_reset.visible = True

    def confirm_reset(self):
        self._confirm_reset.visible = False
        self._do(self._reset, guarded=True)

    def cancel_reset(self):
        self._confirm_reset.visible = False

    def __panel__(self):
        return self._layout

    def drain(self, full=True):
        """One update of the views from the record (tests and notebooks call it).

        ``full``: also the slower views (curve, histograms, fields, firing, confusion, status);
        the periodic update passes ``full=False`` between two of their turns.
        """
        try:
            with pn.io.hold():
                self._drain(full)
        except Exception as error:  # noqa: BLE001: a failing update must say so on the page
            _log.exception("view update failed")
            self._show_notice("danger", f"view update failed: {type(error).__name__}: {error}")

    def _periodic_drain(self):
        """The periodic callback: update the tab once it has drawn the previous update, and
        only when there is something new (an idle tab costs nothing)."""
        activity = self._activity()
        if activity == self._drawn_activity:
            return
        now = time.monotonic()
        acked = self._ack.tags[0] if self._ack.tags else 0
        if acked >= self._update_seq:
            self._ack_timeout = ACK_TIMEOUT_S
        elif now - self._sent_at < self._ack_timeout:
            # the tab is behind (or has not drawn its first update yet, e.g. a background tab):
            # it gets the newest state later
            self.skipped_updates += 1
            return
        else:  # silent for long: send again, and wait longer next time
            self._ack_timeout = min(2 * self._ack_timeout, ACK_TIMEOUT_MAX_S)
        full = now - self._slow_views_at >= SLOW_VIEWS_PERIOD_S
        if full:
            self._slow_views_at = now
            self._drawn_activity = activity  # all of it drawn, the slower views included
        self.drain(full)
        self._sent_at = now

    def _drain(self, full):
        record = self.record
        if self._reader is None or self._reader.record is not record:  # a new run
            self._new_run_views(record)
            full = True
        reader, sources = self._reader, self.sources
        self._drain_sample(reader)
        metrics = reader.read("metrics")
        if len(metrics):
            self._curve.append(sample=metrics.data["sample"],
                               train_accuracy=metrics.data["train_accuracy"],
                               mean_loss=metrics.data["mean_loss"])
        tests = reader.read("tests")
        if len(tests):
            sources["test_accuracy"].stream(
                {"sample": tests.data["sample"], "test_accuracy": tests.data["test_accuracy"]},
                rollover=MARKER_ROLLOVER)
        markers = reader.read("markers")
        if len(markers):
            sources["markers"].stream(
                {"sample": markers.data["sample"], "text": list(markers.data["text"])},
                rollover=MARKER_ROLLOVER)
        while self._notices:
            self._show_notice(*self._notices.popleft())
        if full:
            self._drain_slow_views(reader)
        else:
            self._update_status(only_if_state_changed=True)
        self._update_seq += 1
        self._figures["raster"].tags = [self._update_seq]  # the tab acknowledges it when drawn

    def _new_run_views(self, record):
        self._reader = record.reader()
        self._curve = Thinned(ACCURACY_POINTS, sample=np.int64, train_accuracy=np.float32,
                              mean_loss=np.float32)
        self._curve_total = -1
        for name in ("accuracy", "test_accuracy", "markers", "confusion"):
            source = self.sources[name]
            source.data = {key: [] for key in source.data}
        sizes = record.meta["sizes"]
        plots.set_raster_layers(self._figures["raster"], sizes)
        self._figures["firing"].x_range.factors = plots.layer_names(sizes)[1:]
        self._deeper_kappas.objects = self._deeper_kappa_sliders()

    def _drain_slow_views(self, reader):
        sources = self.sources
        if self._curve.total != self._curve_total:  # replaced: thinning moves older points
            self._curve_total = self._curve.total
            sources["accuracy"].data = self._curve.data()
        network = reader.take("network")
        if network is not None:
            sources["thresholds"].data = plots.threshold_histogram_data(
                network["thresholds"], network["names"])
            sources["receptive_fields"].data = plots.receptive_fields_data(network["fields"])
            self._figures["receptive_fields"].title.text = (
                "receptive fields of hidden neurons "
                + ", ".join(map(str, network["field_neurons"])))
            sources["firing"].data = plots.firing_data(network["names"], network["rates"],
                                                       network["dead"])
        evaluation = reader.take("evaluation")
        if evaluation is not None:
            sources["confusion"].data = plots.confusion_data(evaluation["labels"],
                                                             evaluation["predicted"])
            self._figures["confusion"].title.text = (
                f"confusion matrix: {evaluation['accuracy']:.1%} of "
                f"{len(evaluation['labels']):,} test digits at sample {evaluation['sample']:,}")
        self._update_status()

    def _drain_sample(self, reader):
        """Raster and potentials of the newest displayed sample (replaced, not streamed)."""
        chunk = reader.read("samples", max_rows=1)
        if not len(chunk):
            return
        row = {name: values[-1].item() for name, values in chunk.data.items()}
        record = self._reader.record
        sizes = record.meta["sizes"]
        spikes = record.spikes.read(row["spikes_start"], until=row["spikes_stop"]).data
        self.sources["raster"].data = plots.raster_data(spikes["t_ms"], spikes["layer"],
                                                        spikes["neuron"], sizes)
        raster = self._figures["raster"]
        raster.x_range.end = row["duration_ms"]
        answer = "none" if row["predicted"] < 0 else row["predicted"]
        verdict = "right" if row["predicted"] == row["label"] else "wrong"
        raster.title.text = (f"sample {row['sample']:,}: label {row['label']}, answer {answer} "
                             f"({verdict}), {row['n_spikes']:,} spikes")
        rows = record.potentials.read(row["potentials_start"], until=row["potentials_stop"]).data
        labels = self._watch_labels
        thresholds = np.ones(len(labels))
        watch = rows["watch"]
        present = watch < len(labels)
        thresholds[watch[present]] = rows["threshold"][present]
        traces, levels = plots.potentials_data(
            rows["t_ms"][present], watch[present], rows["v_peak"][present],
            rows["v_end"][present], thresholds, labels, row["duration_ms"],
            self.config.tau_mp_ms)
        self.sources["potentials"].data = traces
        level_source = self.sources["potential_thresholds"]
        if len(level_source.data["xs"]) != len(labels) or (
                level_source.data["xs"][0][-1] != row["duration_ms"]):  # else: the same lines
            level_source.data = levels
        figure = self._figures["potentials"]
        figure.x_range.end = row["duration_ms"]
        if figure.yaxis[0].major_label_overrides != {
                float(k * plots.TRACE_SPACING): label for k, label in enumerate(labels)}:
            plots.set_potential_labels(figure, labels)

    def _show_notice(self, kind, text):
        self._alert.param.update(object=text, alert_type=kind, visible=True)

    def _state(self):
        worker = self._worker
        if worker is not None and worker.waiting:
            return f"waiting for a free training slot ({MAX_RUNNING} may train at once)"
        return "running" if worker is not None and worker.running else "paused"

    def _activity(self):
        """What the views are drawn from: when none of it changed, an update would redraw the
        same page."""
        record = self.record
        return (id(record), record.samples.total, record.metrics.total, record.tests.total,
                record.markers.total, record.network.version, record.evaluation.version,
                len(self._notices), self._state())

    def _update_status(self, only_if_state_changed=False):
        trainer = self.trainer
        now, count = time.perf_counter(), self._sample_count
        then, count_then, speed = self._speed
        if now - then >= 0.5:
            speed = max(0.0, (count - count_then) / (now - then))
            self._speed = (now, count, speed)
        state = self._state()
        if only_if_state_changed and state == self._shown_state:
            return
        self._shown_state = state
        tests = self.sources["test_accuracy"].data["sample"]
        test = (f" | test accuracy {self.sources['test_accuracy'].data['test_accuracy'][-1]:.1%}"
                if len(tests) else "")
        speed = f" | {speed:,.0f} samples/s" if state == "running" else ""
        self._status.object = (
            f"**{state}** | epoch {trainer.epoch + 1} | sample {trainer.position:,} / "
            f"{trainer.n_train:,}{speed}{test}")
        self._progress.param.update(value=min(trainer.position, trainer.n_train),
                                    max=max(trainer.n_train, 1))
