"""N-MNIST: real event-camera recordings in their original layout and format, and event windows.

Layout (Orchard, Jayawant, Cohen, Thakor 2015), as distributed::

    DIR/Train/<label>/<id>.bin      DIR/Test/<label>/<id>.bin

``<label>`` is one digit 0..9; ``<id>`` is the 1-based index of the MNIST image that was
recorded, zero-padded (``00002.bin``). Each event is 5 bytes, big-endian bit fields::

    byte 0: x (8 bits)      byte 1: y (8 bits)
    byte 2: polarity (bit 7, 1 = ON) | timestamp bits 22..16
    byte 3: timestamp bits 15..8     byte 4: timestamp bits 7..0      (microseconds)

The sensor is 34 x 34; a recording lasts about 300 ms (three saccades of about 100 ms each).

Event dtype
-----------
Recordings come out as structured arrays of :data:`NMNIST_DTYPE`, fields ``x, y, t, p``, all
int64 (``t`` in microseconds, ``p`` 0 = OFF, 1 = ON): the dtype of ``tonic.datasets.NMNIST``,
which tonic declares as ``np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])``
(``tonic/datasets/nmnist.py`` in github.com/neuromorphs/tonic, read at commit 7070e82; its
MVSEC and FNMNIST classes declare the same). Python's ``int`` is int64 under NumPy 2 and under NumPy 1 on Linux and
macOS; it is spelled int64 here so the dtype is the same on every platform (under NumPy 1 on
Windows tonic's ``int`` was int32: ``astype`` converts). It is *not* ``tonic.io.events_struct``
(x, y int16, t int64, p bool), the default of tonic's other readers. Arrays of this dtype go
into tonic transforms as they are.

Decoding is exactly the bit layout above. Tonic's reader also takes ``y == 240`` as a
timestamp-overflow marker of the older ATIS format; N-MNIST's 23-bit timestamps (8.4 s) never
overflow in a 300 ms recording and the files hold no such event, so here ``y == 240``, like
any coordinate outside 0..33, is an error, never a silent reinterpretation.

Bad files
---------
:func:`read_nmnist_file` and :func:`load_nmnist` raise :class:`~spikeviz.errors.DataError`,
naming the file, for: an empty file; a size that is not a multiple of 5 (a truncated last
event); x or y outside 0..33; a timestamp below the one before it (equal ones are normal:
every real recording has some). :func:`load_nmnist` also rejects a label folder whose name is
not one digit and a ``.bin`` file whose name is not a number. With ``skip_bad=True`` it skips
those instead and lists each ``(path, reason)`` in :attr:`NMNIST.skipped`. Entries whose name
starts with ``.`` and files not ending in ``.bin`` are ignored.

Storage and load time
---------------------
A split is one :class:`EventRecordings`: compact columns of all its events (x, y uint8, p
bool, t int32: 7 bytes per event) plus CSR offsets, not a list of per-recording structured
arrays. Indexing it (``data.train_events[i]`` or ``data.recording("train", i)``) builds the
tonic-dtype array of one recording on demand (about 20 us for 4,000 events). Reasons: the full N-MNIST holds
about 70,000 x 4,200 = 290 million events, which as tonic arrays (32 bytes an event) would
take 9.3 GB of memory; as columns, 2.0 GB. And loading decodes and checks all files in a few
large vectorized passes instead of ~10 NumPy calls per file: each file costs one
``readinto`` into a shared buffer and nothing else in Python.

Measured on the 2-core development machine, warm file cache, median of 7 runs: the 1,000 real
recordings of ``../shared/data/nmnist/Train`` (4.1 million events, 21 MB) load in 60 ms, of
which 12 ms open and read the files and 20 ms draw the validation split (no ``Test/``): 60 us a
recording. 10,000 recordings (copies of those, in ``Train/`` and ``Test/``, 218 MB) load in
330 ms, 33 us a recording. Extrapolated to the 70,000 recordings of the full set: 2.3 to 4.2 s
(2 GB of columns) when its files are in the file cache; from a cold disk, reading 350 MB of
small files is bounded by the disk instead. Decoding file by file into a list of tonic arrays
(``read_nmnist_file`` per file) took 110 ms for the 1,000, twice as long, and for 70,000 would
need 9.3 GB.

Times
-----
:func:`events_to_channels` keeps the recording's own clock: ``times_ms = t / 1000``, not
shifted to the first event. N-MNIST recordings start within 7.4 ms of ``t = 0`` (1.3 ms on
average over the 1,000 real ones), and the absolute clock keeps the three saccades at the same
times in every recording, as the paper's test on whole recordings sees them. :func:`window`
shifts its window to start at 0, since a window cut at a random position has no common origin.

The N-MNIST data set is distributed under CC BY-SA 4.0; credit the authors above.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from spikeviz.errors import ConfigError, DataError

__all__ = [
    "EventRecordings", "EventWindow", "NMNIST", "NMNIST_DTYPE", "SENSOR_HEIGHT", "SENSOR_WIDTH",
    "events_to_channels", "load_nmnist", "read_nmnist_file", "window",
]

#: The event dtype of ``tonic.datasets.NMNIST``: x, y in pixels, t in microseconds, p 0/1.
NMNIST_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])

SENSOR_WIDTH = 34
SENSOR_HEIGHT = 34
EVENT_BYTES = 5
SPLITS = ("train", "test")

#: Raw bytes read and decoded per batch by load_nmnist (about 16,000 recordings).
_BATCH_BYTES = 64 * 2**20
_FIX_FILE = ("Fix: replace it with a good copy of the N-MNIST file, delete it, or pass "
             "skip_bad=True (--skip-bad) to skip bad files and report them")


class EventRecordings(Sequence):
    """The recordings of one split, stored as columns of all their events plus CSR offsets.

    ``recordings[i]`` is recording ``i`` as a new structured array of :data:`NMNIST_DTYPE`;
    ``len``, iteration, negative indices and slices (which give an ``EventRecordings``) work as
    on a list.

    Parameters
    ----------
    x, y : numpy.ndarray
        Shape ``(E,)`` uint8, pixel coordinates 0..33 of every event of every recording.
    t_us : numpy.ndarray
        Shape ``(E,)`` int32, timestamps in microseconds, non-decreasing within a recording.
    p : numpy.ndarray
        Shape ``(E,)`` bool, True = ON.
    offsets : numpy.ndarray
        Shape ``(n + 1,)`` int64: recording ``i`` is events ``offsets[i]:offsets[i + 1]``.

    The arrays are kept as they are when they already have these dtypes (otherwise
    converted), and made read-only.
    """

    __slots__ = ("offsets", "p", "t_us", "x", "y")

    def __init__(self, x, y, t_us, p, offsets):
        self.x, self.y, self.t_us, self.p, self.offsets = (
            _read_only(x, np.uint8), _read_only(y, np.uint8), _read_only(t_us, np.int32),
            _read_only(p, np.bool_), _read_only(offsets, np.int64))
        n_events = self.x.size
        if not (self.y.size == self.t_us.size == self.p.size == n_events
                and self.offsets.ndim == 1 and self.offsets.size >= 1
                and self.offsets[0] == 0 and self.offsets[-1] == n_events
                and np.all(np.diff(self.offsets) >= 0)):
            raise ValueError("EventRecordings: columns of unequal length or offsets that are "
                             "not 0 .. n_events, non-decreasing")

    def __len__(self):
        return self.offsets.size - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        i = _check_index(index, len(self))
        start, stop = self.offsets[i], self.offsets[i + 1]
        events = np.empty(stop - start, NMNIST_DTYPE)
        events["x"] = self.x[start:stop]
        events["y"] = self.y[start:stop]
        events["t"] = self.t_us[start:stop]
        events["p"] = self.p[start:stop]
        return events

    def __repr__(self):
        return f"EventRecordings({len(self):,} recordings, {self.x.size:,} events)"

    @property
    def n_events(self):
        """Shape ``(n,)`` int64: the number of events of each recording."""
        return np.diff(self.offsets)

    def subset(self, indices):
        """The recordings at ``indices``, in that order, as a new ``EventRecordings``.

        Parameters
        ----------
        indices : array_like of int
            Shape ``(k,)``, each in ``0 .. n - 1``.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"recording indices must be 0..{len(self) - 1}")
        starts = self.offsets[indices]
        counts = self.offsets[indices + 1] - starts
        offsets = np.zeros(indices.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        # Event j of the subset comes from starts[r] + (j - offsets[r]) for its recording r.
        gather = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return EventRecordings(self.x[gather], self.y[gather], self.t_us[gather],
                               self.p[gather], offsets)


@dataclass(frozen=True, eq=False)
class NMNIST:
    """An N-MNIST data set: recordings, labels and ids of a training and a test split.

    Attributes
    ----------
    train_events, test_events : EventRecordings
        The recordings; ``train_events[i]`` is a structured array of :data:`NMNIST_DTYPE`.
        Ordered by label, then id.
    train_labels, test_labels : numpy.ndarray
        Shape ``(n,)`` uint8, classes 0..9 (the label folder of each file).
    train_ids, test_ids : numpy.ndarray
        Shape ``(n,)`` int64, the file name's number: the 1-based index of the MNIST image
        (training image for both N-MNIST splits' Train, test image for Test).
    origin : str
        The data directory.
    test_is_validation_split : bool
        True when the directory has no ``Test/`` and the test split is a stratified
        validation part of ``Train/``; callers must say so when they report test results.
    skipped : tuple of (str, str)
        ``(path, reason)`` of each bad file or label folder skipped (``skip_bad=True``).
    """

    train_events: EventRecordings = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    train_ids: np.ndarray = field(repr=False)
    test_events: EventRecordings = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    test_ids: np.ndarray = field(repr=False)
    origin: str
    test_is_validation_split: bool = False
    skipped: tuple = ()

    def recording(self, split, i):
        """Recording ``i`` of ``split`` ("train" or "test") as a :data:`NMNIST_DTYPE` array."""
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        return getattr(self, f"{split}_events")[i]


class EventWindow(NamedTuple):
    """A window of consecutive events, shifted to start at time 0."""

    events: np.ndarray  # (k,) NMNIST_DTYPE, t in us from the window's first event
    duration_ms: float  # last minus first event time of the window


def read_nmnist_file(path):
    """Read one N-MNIST ``.bin`` recording.

    Parameters
    ----------
    path : str or os.PathLike
        The file (5 bytes per event; see the module docstring).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_events,)``, :data:`NMNIST_DTYPE`: x, y in 0..33, t in microseconds
        (non-decreasing), p 0 = OFF or 1 = ON.

    Raises
    ------
    DataError
        Naming the file, if it cannot be read, is empty, is truncated (size not a multiple
        of 5), has a coordinate outside the 34 x 34 sensor or a timestamp that goes back.
    """
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"N-MNIST file {path}: cannot be read ({exc}). Fix: check the path "
                        f"and its permissions.") from exc
    problem = _size_problem(raw.size)
    if problem is None:
        columns = _decode(raw)
        offsets = np.array([0, raw.size // EVENT_BYTES], np.int64)
        problem = _event_problems(columns, offsets).get(0)
    if problem is not None:
        raise DataError(f"N-MNIST file {path}: {problem}. {_FIX_FILE}.")
    return EventRecordings(*columns, offsets)[0]


def load_nmnist(data_dir, *, skip_bad=False, validation_fraction=0.2, seed=0):
    """Load an N-MNIST directory: ``Train/`` and, if present, ``Test/``.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Directory holding ``Train/<label>/<id>.bin`` and optionally ``Test/<label>/<id>.bin``.
    skip_bad : bool, optional
        Skip bad files and label folders and list them in :attr:`NMNIST.skipped`, instead of
        raising on the first one.
    validation_fraction : float, optional
        When ``Test/`` is absent: the fraction of ``Train/`` that forms the test split,
        stratified by class (see :func:`_validation_split`). In (0, 1). Ignored when
        ``Test/`` exists.
    seed : int, optional
        Seed of the validation split's shuffle (same seed, same split).

    Returns
    -------
    NMNIST
        Recordings ordered by label, then id; see :class:`NMNIST`.

    Raises
    ------
    DataError
        If ``data_dir`` or its ``Train/`` is missing, a split has no recordings, a bad file
        or label folder is found (unless ``skip_bad``; the message names it), or the
        validation split would leave a part empty.
    ConfigError
        If ``validation_fraction`` is not in (0, 1).
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction must be in (0, 1), not {validation_fraction}. "
                          f"Fix: pass a fraction such as 0.2.")
    directory = Path(data_dir).expanduser()
    if not (directory / "Train").is_dir():
        what = "is not a directory" if not directory.is_dir() else "has no Train/ folder"
        raise DataError(f"N-MNIST directory {directory} {what}; it must hold "
                        f"Train/<label>/<id>.bin (and optionally Test/<label>/<id>.bin). Fix: "
                        f"point --data-dir at the folder that contains Train/, not at Train/ "
                        f"itself.")
    skipped = []
    train = _load_split(directory / "Train", skip_bad, skipped)
    has_test = (directory / "Test").is_dir()
    if has_test:
        test = _load_split(directory / "Test", skip_bad, skipped)
    else:
        train, test = _validation_split(train, validation_fraction, seed, directory)
    return NMNIST(train_events=train[0], train_labels=train[1], train_ids=train[2],
                  test_events=test[0], test_labels=test[1], test_ids=test[2],
                  origin=str(directory), test_is_validation_split=not has_test,
                  skipped=tuple(skipped))


def events_to_channels(events, *, width=SENSOR_WIDTH, height=SENSOR_HEIGHT):
    """Turn camera events into an input event stream: times in ms and input channels.

    Parameters
    ----------
    events : numpy.ndarray
        Shape ``(E,)`` structured with fields x, y, t (microseconds, non-decreasing) and p
        (0/False = OFF, 1/True = ON), e.g. :data:`NMNIST_DTYPE`.
    width, height : int, optional
        Sensor size in pixels (N-MNIST: 34 x 34).

    Returns
    -------
    Events
        ``times_ms``: ``(E,)`` float64, ``t / 1000``, the recording's own clock (not shifted;
        see the module docstring). ``channels``: ``(E,)`` int32,
        ``p * width * height + y * width + x``: the OFF block 0 .. w*h - 1 first, then ON
        (N-MNIST: OFF 0..1155, ON 1156..2311; 2,312 inputs).

    Raises
    ------
    DataError
        If a coordinate is outside the sensor, a polarity is not 0/1, or times go back.
    """
    # Imported here: spikeviz.encode imports numba (0.3 s), which loading data does not need.
    from spikeviz.encode import Events

    x, y, t, p = (np.asarray(events[name]) for name in ("x", "y", "t", "p"))
    if events.size:
        if x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height:
            raise DataError(f"events have x in {x.min()}..{x.max()} and y in "
                            f"{y.min()}..{y.max()}, outside the {width} x {height} sensor. Fix: "
                            f"pass the sensor's width and height, or crop the events to it.")
        if p.dtype != np.bool_ and (p.min() < 0 or p.max() > 1):
            raise DataError(f"event polarities must be 0 (OFF) or 1 (ON), found "
                            f"{p.min()}..{p.max()}. Fix: map them to 0/1 first.")
        if np.any(t[1:] < t[:-1]):
            raise DataError("event times go backwards. Fix: sort the events by time first, "
                            "np.sort(events, order='t', kind='stable').")
    channels = (p.astype(np.int32) * (width * height) + y.astype(np.int32) * width
                + x.astype(np.int32))
    return Events(times_ms=t / 1000.0, channels=channels.astype(np.int32, copy=False))


def window(events, n_events, rng):
    """Cut ``n_events`` consecutive events at a uniformly random position, shifted to start at 0.

    Parameters
    ----------
    events : numpy.ndarray
        Shape ``(E,)`` structured with a field t (microseconds, non-decreasing), e.g. one
        recording of :data:`NMNIST_DTYPE`.
    n_events : int
        Window length in events (the paper trains on 300).
    rng : numpy.random.Generator
        Draws the first event, uniform over ``0 .. E - n_events`` (one ``integers`` draw);
        nothing is drawn when ``E <= n_events``.

    Returns
    -------
    EventWindow
        ``events``: a new array of ``min(n_events, E)`` events, the whole recording when it
        is no longer than ``n_events``, with ``t`` minus the window's first ``t``;
        ``duration_ms``: its last event time in ms (0.0 for fewer than two events), the
        presentation length the window needs.
    """
    if (isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer))
            or n_events < 1):
        raise ConfigError(f"n_events must be a positive whole number of events, not "
                          f"{n_events!r}. Fix: pass e.g. 300.")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
    n_total = events.size
    start = 0 if n_total <= n_events else int(rng.integers(0, n_total - n_events + 1))
    cut = events[start:start + n_events].copy()
    if cut.size:
        cut["t"] -= cut["t"][0]
    duration_ms = float(cut["t"][-1]) / 1000.0 if cut.size else 0.0
    return EventWindow(cut, duration_ms)


# --- decoding and checks ---------------------------------------------------------------------

def _decode(raw, out=None):
    """Decode raw bytes, a multiple of 5, into the columns x, y (uint8), t_us (int32), p (bool).

    Bytes 1..4 of each event, read as one big-endian uint32, are y (bits 31..24), p (bit 23)
    and t (bits 22..0): one strided view decodes p and t without combining bytes by hand.
    ``out``, if given, is the four columns to write into (each of the right length); they are
    returned.
    """
    n_events = raw.size // EVENT_BYTES
    if out is None:
        out = (np.empty(n_events, np.uint8), np.empty(n_events, np.uint8),
               np.empty(n_events, np.int32), np.empty(n_events, np.bool_))
    x, y, t_us, p = out
    if n_events == 0:
        return out
    records = raw.reshape(-1, EVENT_BYTES)
    word = np.ndarray((n_events,), dtype=">u4", buffer=raw, offset=1,
                      strides=(EVENT_BYTES,)).astype(np.uint32)
    x[:] = records[:, 0]
    y[:] = records[:, 1]
    np.bitwise_and(word, 0x7FFFFF, out=t_us, casting="unsafe")  # < 2**23: fits int32
    np.bitwise_and(word, 0x800000, out=p, casting="unsafe")  # nonzero -> True
    return out


def _size_problem(n_bytes):
    """Why a file of ``n_bytes`` cannot be N-MNIST events, or None."""
    if n_bytes == 0:
        return "is empty (0 bytes, no events)"
    if n_bytes % EVENT_BYTES:
        return (f"is truncated: {n_bytes:,} bytes is not a whole number of {EVENT_BYTES}-byte "
                f"events (the last {n_bytes % EVENT_BYTES} bytes are a partial event)")
    return None


def _event_problems(columns, offsets):
    """The first problem of each bad recording, by recording index.

    Parameters
    ----------
    columns : tuple
        x, y, t_us, p of all events.
    offsets : numpy.ndarray
        ``(n + 1,)`` int64, recording i is events ``offsets[i]:offsets[i + 1]``.

    Returns
    -------
    dict
        ``{recording index: reason}``, only for the bad recordings.
    """
    x, y, t_us, _ = columns
    problems = {}
    outside = np.flatnonzero((x >= SENSOR_WIDTH) | (y >= SENSOR_HEIGHT))
    backwards = np.flatnonzero(t_us[1:] < t_us[:-1]) + 1  # event k has t[k] < t[k - 1]
    # The first event of a recording may be earlier than the last of the one before.
    backwards = backwards[~np.isin(backwards, offsets[1:-1])]
    found = []  # (recording, event index within it, reason), coordinates first
    for event in _first_per_recording(outside, offsets):
        rec = _recording_of(event, offsets)
        hint = (" (y = 240 is the timestamp-overflow marker of the older ATIS format, which "
                "N-MNIST files do not use)" if y[event] == 240 else "")
        found.append((rec, event - offsets[rec], f"event {event - offsets[rec]:,} has x = "
                      f"{x[event]}, y = {y[event]}, outside the {SENSOR_WIDTH} x "
                      f"{SENSOR_HEIGHT} sensor (0..{SENSOR_WIDTH - 1}){hint}"))
    for event in _first_per_recording(backwards, offsets):
        rec = _recording_of(event, offsets)
        found.append((rec, event - offsets[rec], f"timestamps go backwards at event "
                      f"{event - offsets[rec]:,}: {t_us[event - 1]} us, then {t_us[event]} us"))
    for rec, _, reason in sorted(found, key=lambda item: item[:2]):
        problems.setdefault(int(rec), reason)
    return problems


def _first_per_recording(event_indices, offsets):
    """The first of the sorted ``event_indices`` in each recording that has any."""
    if not event_indices.size:
        return event_indices
    recs = np.searchsorted(offsets, event_indices, side="right") - 1
    _, first = np.unique(recs, return_index=True)
    return event_indices[first]


def _recording_of(event, offsets):
    return int(np.searchsorted(offsets, event, side="right") - 1)


# --- loading a split -------------------------------------------------------------------------

def _list_split(split_dir, skip_bad, skipped):
    """The ``.bin`` files of a split: paths, sizes, labels and ids, by label then id.

    Label folders that are not one digit and files whose name is not a number are raised,
    or with ``skip_bad`` appended to ``skipped``.
    """
    entries = []  # (label, id, path, size)
    for folder in sorted(_scandir(split_dir), key=lambda entry: entry.name):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if not (len(folder.name) == 1 and folder.name in "0123456789"):
            reason = (f"the folder name {folder.name!r} is not a label (one digit 0..9); "
                      f"its files were not read")
            _bad(folder.path, reason, skip_bad, skipped, kind="label folder",
                 fix="rename it to its digit, move it out of the split folder, or pass "
                     "skip_bad=True (--skip-bad) to skip it and report it")
            continue
        label = int(folder.name)
        for file in _scandir(folder.path):
            if file.name.startswith(".") or not file.name.endswith(".bin"):
                continue
            stem = file.name[:-4]
            if not (stem.isascii() and stem.isdigit()):
                _bad(file.path, f"the file name {file.name!r} is not a recording id (a number "
                     f"such as 00002.bin)", skip_bad, skipped)
                continue
            entries.append((label, int(stem), file.path, file.stat().st_size))
    entries.sort(key=lambda entry: entry[:2])
    return entries


def _load_split(split_dir, skip_bad, skipped):
    """Read and check every recording of a split: ``(EventRecordings, labels, ids)``."""
    entries = _list_split(split_dir, skip_bad, skipped)
    kept = []
    for entry in entries:
        problem = _size_problem(entry[3])
        if problem is None:
            kept.append(entry)
        else:
            _bad(entry[2], problem, skip_bad, skipped)
    sizes = np.array([entry[3] for entry in kept], np.int64)
    offsets = np.zeros(len(kept) + 1, np.int64)
    np.cumsum(sizes // EVENT_BYTES, out=offsets[1:])
    n_events = int(offsets[-1])
    x, y = np.empty(n_events, np.uint8), np.empty(n_events, np.uint8)
    t_us, p = np.empty(n_events, np.int32), np.empty(n_events, np.bool_)
    bad = {}  # index into kept -> reason
    batch = np.empty(min(max(sizes.max(initial=0), _BATCH_BYTES), n_events * EVENT_BYTES),
                     np.uint8)
    first = 0
    while first < len(kept):
        # Files first .. last - 1 fill at most one batch buffer (at least one file).
        last = first + 1
        while (last < len(kept)
               and (offsets[last + 1] - offsets[first]) * EVENT_BYTES <= batch.size):
            last += 1
        n_read = _read_into(kept, first, last, offsets, batch, bad)
        events = slice(offsets[first], offsets[last])
        columns = _decode(batch[:n_read], out=(x[events], y[events], t_us[events], p[events]))
        batch_offsets = offsets[first:last + 1] - offsets[first]
        for rec, reason in _event_problems(columns, batch_offsets).items():
            bad.setdefault(first + rec, reason)
        first = last
    keep = np.ones(len(kept), bool)
    for index in sorted(bad):
        _bad(kept[index][2], bad[index], skip_bad, skipped)
        keep[index] = False
    recordings = EventRecordings(x, y, t_us, p, offsets)
    if not keep.all():
        recordings = recordings.subset(np.flatnonzero(keep))
    kept = [entry for entry, ok in zip(kept, keep) if ok]
    if not kept:
        raise DataError(f"N-MNIST split {split_dir} has no readable recordings"
                        f"{' (all were skipped as bad)' if entries else ''}; it must hold "
                        f"<label>/<id>.bin files, label a digit 0..9. Fix: point --data-dir "
                        f"at a complete N-MNIST directory.")
    labels = np.array([entry[0] for entry in kept], np.uint8)
    ids = np.array([entry[1] for entry in kept], np.int64)
    return recordings, _read_only(labels, np.uint8), _read_only(ids, np.int64)


def _read_into(kept, first, last, offsets, batch, bad):
    """Read files ``first .. last - 1`` back to back into ``batch``; return the bytes read.

    One ``readinto`` per file. A file that cannot be read, or that is shorter than when it was
    listed, is recorded in ``bad``; its bytes in the batch stay zero (x = y = 0, t = 0) so the
    batch still decodes, and the recording is dropped or raised later with the others.
    """
    view = memoryview(batch)
    base = offsets[first] * EVENT_BYTES
    for index in range(first, last):
        start, stop = offsets[index] * EVENT_BYTES - base, offsets[index + 1] * EVENT_BYTES - base
        path = kept[index][2]
        try:
            with open(path, "rb", buffering=0) as file:
                n_read = file.readinto(view[start:stop])
        except OSError as exc:
            n_read = None
            bad[index] = f"cannot be read ({exc})"
        if n_read is not None and n_read != stop - start:
            bad[index] = (f"changed size while it was being read ({n_read:,} of "
                          f"{stop - start:,} bytes)")
        if index in bad:
            batch[start:stop] = 0
    return int(offsets[last] - offsets[first]) * EVENT_BYTES


def _validation_split(train, fraction, seed, directory):
    """Split ``(recordings, labels, ids)`` into train and validation parts, stratified.

    The validation part has round(fraction * n) recordings, shared among the classes in
    proportion to their sizes by largest remainders (class c gets floor(fraction * n_c), and
    the recordings left go one each to the classes with the largest fractional parts, ties to
    the lower digit), so each class gets floor or ceil of its share even when classes are
    small. Within a class they are drawn without replacement by a Generator seeded with
    ``seed`` (classes in order 0..9). Both parts keep the label-then-id order.
    """
    recordings, labels, ids = train
    per_class = np.bincount(labels, minlength=10)
    shares = fraction * per_class
    n_validation = np.floor(shares).astype(np.int64)
    n_left = int(np.floor(fraction * labels.size + 0.5)) - int(n_validation.sum())
    by_remainder = np.argsort(-(shares - n_validation), kind="stable")
    n_validation[by_remainder[:n_left]] += 1
    rng = np.random.default_rng(seed)
    is_validation = np.zeros(labels.size, bool)
    for label in range(10):
        members = np.flatnonzero(labels == label)
        is_validation[rng.choice(members, size=n_validation[label], replace=False)] = True
    if is_validation.all() or not is_validation.any():
        raise DataError(f"N-MNIST directory {directory} has no Test/ folder, and a validation "
                        f"fraction of {fraction} of its {labels.size:,} training recordings "
                        f"leaves a part empty. Fix: add a Test/ folder, add recordings, or "
                        f"change validation_fraction.")
    parts = []
    for mask in (~is_validation, is_validation):
        indices = np.flatnonzero(mask)
        parts.append((recordings.subset(indices), _read_only(labels[indices], np.uint8),
                      _read_only(ids[indices], np.int64)))
    return parts


# --- helpers ---------------------------------------------------------------------------------

def _bad(path, reason, skip_bad, skipped, *, kind="file", fix=None):
    """Record a bad file or folder in ``skipped``, or raise DataError naming it."""
    if skip_bad:
        skipped.append((str(path), reason))
        return
    fix = _FIX_FILE if fix is None else f"Fix: {fix}"
    raise DataError(f"N-MNIST {kind} {path}: {reason}. {fix}.")


def _scandir(directory):
    """The entries of ``directory`` as a list (the iterator closed, even if a caller raises)."""
    with os.scandir(directory) as entries:
        return list(entries)


def _read_only(array, dtype):
    array = np.ascontiguousarray(array, dtype=dtype)
    array.flags.writeable = False
    return array


def _check_index(index, length):
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"recording index must be an integer or a slice, not "
                        f"{type(index).__name__}")
    i = int(index) + length if index < 0 else int(index)
    if not 0 <= i < length:
        raise IndexError(f"recording index {index} is out of range for {length:,} recordings")
    return i
