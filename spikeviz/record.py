"""Bounded, thread-safe logs between a training thread (one writer) and views (readers).

The training worker appends numpy chunks; each view keeps, per log, the sequence number of the
next row it has not seen and drains from there.  Every row ever appended has a sequence number
(0, 1, 2, ...), so a reader that keeps up sees each row exactly once, in order; a reader that
falls more than ``capacity`` rows behind is told how many rows it missed.  Memory is fixed at
construction: a log preallocates one array per column and overwrites its oldest rows.

Two structures:

- :class:`RingLog`: rows of named columns (spikes, potentials, per-sample metrics, markers);
- :class:`Latest`: a versioned slot for a value whose history nobody needs (the newest network
  snapshot, the newest evaluation); readers take it when its version changed;
- :class:`Thinned`: the whole history of a long series (e.g. the accuracy curve) in a fixed
  number of rows, evenly spaced, thinned as it grows.

:class:`TrainingRecord` bundles the logs of one training run.  Pure numpy and threading: the
views (``spikeviz.viz``) turn what they drain into plots.
"""

import threading
from typing import NamedTuple

import numpy as np

__all__ = ["Chunk", "Latest", "Reader", "RingLog", "Thinned", "TrainingRecord"]


class Chunk(NamedTuple):
    """What one :meth:`RingLog.read` returns.

    Attributes
    ----------
    data : dict of column name -> array, the rows ``start <= seq < stop`` (copies)
    start : int, sequence number of the first row in ``data``
    stop : int, sequence number to pass as ``since`` to the next read
    missed : int, rows after ``since`` that were overwritten before this read
    """

    data: dict
    start: int
    stop: int
    missed: int

    def __len__(self):
        return self.stop - self.start


class RingLog:
    """A fixed-capacity log of rows with named, typed columns and sequence numbers.

    Parameters
    ----------
    capacity : int, rows kept; older rows are overwritten
    **columns : column name -> numpy dtype (``object`` for strings)

    Examples
    --------
    >>> log = RingLog(4, t_ms=np.float64, neuron=np.int32)
    >>> log.append(t_ms=[0.5, 1.5], neuron=[3, 7])
    2
    >>> chunk = log.read(since=0)
    >>> chunk.data["neuron"].tolist(), chunk.stop
    ([3, 7], 2)
    """

    def __init__(self, capacity, **columns):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 row, got {capacity}")
        if not columns:
            raise ValueError("a RingLog needs at least one column")
        self.capacity = int(capacity)
        self._columns = {name: np.zeros(self.capacity, dtype) for name, dtype in columns.items()}
        self._total = 0  # rows ever appended = sequence number of the next row
        self._lock = threading.Lock()

    @property
    def columns(self):
        return tuple(self._columns)

    @property
    def total(self):
        """Rows ever appended (the sequence number the next row will get)."""
        return self._total

    @property
    def dropped(self):
        """Rows overwritten (or never stored, for a chunk longer than the capacity)."""
        return max(0, self._total - self.capacity)

    @property
    def nbytes(self):
        """Bytes held by the column arrays (fixed; object columns count their pointers)."""
        return sum(a.nbytes for a in self._columns.values())

    def append(self, **arrays):
        """Append rows: one equal-length array (or scalar, for a single row) per column.

        Returns the sequence number after the last appended row.  A chunk longer than the
        capacity keeps its last ``capacity`` rows; the rest count as dropped.
        """
        if set(arrays) != set(self._columns):
            raise ValueError(f"append needs exactly the columns {sorted(self._columns)}, "
                             f"got {sorted(arrays)}")
        values = {name: np.atleast_1d(np.asarray(a)) for name, a in arrays.items()}
        lengths = {len(a) for a in values.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths: "
                             f"{ {name: len(a) for name, a in values.items()} }")
        n = lengths.pop()
        skip = max(0, n - self.capacity)  # rows of this chunk that could never be stored
        with self._lock:
            first = self._total + skip  # sequence number of the first stored row
            for name, column in self._columns.items():
                _write_wrapped(column, first % self.capacity, values[name][skip:])
            self._total += n
            return self._total

    def read(self, since=0, max_rows=None, until=None):
        """Rows with sequence numbers ``>= since`` (and ``< until``) still held, oldest first
        (copies).

        Parameters
        ----------
        since : int, the ``stop`` of the previous read (0 at first)
        max_rows : int, optional: return at most the *newest* this many rows; the skipped older
            ones count as missed (views that only want the latest state use it)
        until : int, optional: stop before this sequence number (a range recorded earlier, e.g.
            the spikes of one sample)
        """
        with self._lock:
            stop = self._total if until is None else min(until, self._total)
            oldest = max(0, self._total - self.capacity)
            start = min(max(since, oldest), stop)
            if max_rows is not None:
                start = max(start, stop - max_rows)
            data = {name: _read_wrapped(column, start, stop) for name, column in
                    self._columns.items()}
        return Chunk(data, start, stop, max(0, start - since))


def _write_wrapped(column, at, values):
    n = len(values)
    first = min(n, column.size - at)
    column[at:at + first] = values[:first]
    if first < n:
        column[:n - first] = values[first:]


def _read_wrapped(column, start, stop):
    capacity = column.size
    n = stop - start
    at = start % capacity
    if at + n <= capacity:
        return column[at:at + n].copy()
    return np.concatenate([column[at:], column[:at + n - capacity]])


class Latest:
    """The newest value of something, with a version number readers compare.

    Publishing replaces the value (memory: one value).  ``take(version)`` returns the value and
    its version when it is newer than ``version``, else ``(None, version)``.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._value = None
        self._version = 0

    @property
    def version(self):
        return self._version

    def publish(self, value):
        with self._lock:
            self._value = value
            self._version += 1
            return self._version

    def take(self, since=0):
        with self._lock:
            if self._version > since:
                return self._value, self._version
            return None, since

    def peek(self):
        """The current value, whatever its version."""
        with self._lock:
            return self._value


class Thinned:
    """At most ``capacity`` rows of a series of any length, evenly spaced over all of it.

    Row ``i`` of the series (counting every row ever appended) is kept when ``i`` is a multiple
    of the current ``stride``; when the kept rows fill the capacity, every other one is dropped
    and the stride doubles.  So the rows kept are always rows 0, stride, 2 stride, ... of the
    whole history: a curve of an hour or of a week costs the same memory, and a plot of it the
    same points.  Not thread-safe: one owner (a view) appends and reads.

    Parameters
    ----------
    capacity : int, even, at least 2: rows kept
    **columns : column name -> numpy dtype
    """

    def __init__(self, capacity, **columns):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number of rows >= 2, got {capacity}")
        self.capacity = int(capacity)
        self._columns = {name: np.zeros(self.capacity, dtype) for name, dtype in columns.items()}
        self.size = 0  # rows kept
        self.stride = 1  # rows of the series per kept row
        self.total = 0  # rows ever appended
        self.last = None  # the newest row appended, kept or not: {column: value}

    def append(self, **arrays):
        """Append rows (one equal-length array per column); keeps those on the stride."""
        values = {name: np.asarray(arrays[name]) for name in self._columns}
        n = len(next(iter(values.values())))
        if n == 0:
            return
        self.last = {name: column[-1] for name, column in values.items()}
        index = self.total + np.arange(n)
        self.total += n
        while index.size:
            on_stride = index % self.stride == 0
            index = index[on_stride]
            values = {name: column[on_stride] for name, column in values.items()}
            if self.size == self.capacity and index.size:
                self._halve()
                continue
            count = min(index.size, self.capacity - self.size)
            for name, column in self._columns.items():
                column[self.size:self.size + count] = values[name][:count]
            self.size += count
            index = index[count:]
            values = {name: column[count:] for name, column in values.items()}

    def _halve(self):
        half = self.capacity // 2
        for column in self._columns.values():
            column[:half] = column[:self.capacity:2]
        self.size = half
        self.stride *= 2

    def data(self, with_last=True):
        """Copies of the kept rows, oldest first; ``with_last``: and the newest row appended
        when it is not among them (so that a curve always ends at the present)."""
        columns = {name: column[:self.size].copy() for name, column in self._columns.items()}
        if with_last and self.last is not None and (self.total - 1) % self.stride:
            columns = {name: np.append(column, self.last[name])
                       for name, column in columns.items()}
        return columns


class TrainingRecord:
    """The logs of one training run, written by its worker and drained by its views.

    Layers are numbered as in the raster: 0 is the input, 1.. the hidden layers, the last one
    the output (``Simulator`` layer index + 1).

    Attributes
    ----------
    spikes : RingLog, spikes of the displayed samples: ``sample`` (index of the trained sample),
        ``t_ms`` (time in the presentation, ms), ``layer``, ``neuron``
    potentials : RingLog, membrane potentials of the watched neurons in the displayed samples:
        ``sample``, ``t_ms``, ``watch`` (index into the watch list), ``v_peak`` (V after the
        input, before reset and inhibition), ``v_end`` (V once the event is processed),
        ``threshold`` (the neuron's threshold at the end of the sample)
    samples : RingLog, one row per displayed sample, appended after its spikes and potentials:
        ``sample``, ``label``, ``predicted`` (-1: no answer), ``duration_ms``, ``n_spikes``
        (spikes of all layers, stored or not), and the sequence numbers of its rows in the two
        other logs, ``spikes_start`` .. ``spikes_stop`` and ``potentials_start`` ..
        ``potentials_stop`` (a view reads the newest sample's rows with ``read(start,
        until=stop)``)
    metrics : RingLog, one row per trained sample: ``sample``, ``epoch``, ``correct`` (0/1),
        ``loss``, ``train_accuracy`` and ``mean_loss`` (moving averages)
    tests : RingLog, one row per evaluation: ``sample``, ``test_accuracy``, ``n_samples``
    markers : RingLog, one row per event worth a mark on the curves: ``sample``, ``text``
        (e.g. ``"kappa_hidden -0.4 -> -0.8"``)
    network : Latest, a dict snapshot of the network (thresholds per layer, receptive fields,
        firing statistics)
    evaluation : Latest, a dict of the last evaluation (labels, predictions, accuracy)
    meta : dict, what the run is (e.g. the network's layer sizes), for the views
    """

    def __init__(self, *, spike_capacity=200_000, potential_capacity=200_000,
                 sample_capacity=1_000, metric_capacity=100_000, marker_capacity=1_000,
                 meta=None):
        self.meta = dict(meta or {})
        self.spikes = RingLog(spike_capacity, sample=np.int64, t_ms=np.float64, layer=np.int16,
                              neuron=np.int32)
        self.potentials = RingLog(potential_capacity, sample=np.int64, t_ms=np.float64,
                                  watch=np.int32, v_peak=np.float32, v_end=np.float32,
                                  threshold=np.float32)
        self.samples = RingLog(sample_capacity, sample=np.int64, label=np.int16,
                               predicted=np.int16, duration_ms=np.float64, n_spikes=np.int64,
                               spikes_start=np.int64, spikes_stop=np.int64,
                               potentials_start=np.int64, potentials_stop=np.int64)
        self.metrics = RingLog(metric_capacity, sample=np.int64, epoch=np.int32, correct=np.int8,
                               loss=np.float32, train_accuracy=np.float32, mean_loss=np.float32)
        self.tests = RingLog(marker_capacity, sample=np.int64, test_accuracy=np.float64,
                             n_samples=np.int64)
        self.markers = RingLog(marker_capacity, sample=np.int64, text=object)
        self.network = Latest()
        self.evaluation = Latest()

    @property
    def logs(self):
        return {"spikes": self.spikes, "potentials": self.potentials, "samples": self.samples,
                "metrics": self.metrics, "tests": self.tests, "markers": self.markers}

    @property
    def nbytes(self):
        """Bytes of the preallocated logs (fixed for the life of the record)."""
        return sum(log.nbytes for log in self.logs.values())

    def reader(self, from_start=True):
        """A :class:`Reader` at the start of every log (or at its current end)."""
        return Reader(self, from_start=from_start)


class Reader:
    """One view's position in each log of a :class:`TrainingRecord`."""

    def __init__(self, record, from_start=True):
        self.record = record
        self.since = {name: 0 if from_start else log.total for name, log in record.logs.items()}
        self.versions = {"network": 0, "evaluation": 0}
        self.missed = dict.fromkeys(self.since, 0)

    def read(self, name, max_rows=None):
        """New rows of log ``name`` since the last read of this reader."""
        chunk = self.record.logs[name].read(self.since[name], max_rows=max_rows)
        self.since[name] = chunk.stop
        self.missed[name] += chunk.missed
        return chunk

    def take(self, name):
        """The newest value of slot ``name`` (``network``, ``evaluation``) if it changed, else
        None."""
        value, self.versions[name] = getattr(self.record, name).take(self.versions[name])
        return value
