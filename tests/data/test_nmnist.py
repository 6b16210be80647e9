"""N-MNIST: decoding, the real recordings, every bad-file case, splits, channels and windows.

The real recordings are the 1,000 of ``../shared/data/nmnist/Train`` (every development machine
and CI run has them: a missing copy fails, it does not skip). Tests write only under tmp_path.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeviz.data.nmnist import (
    NMNIST_DTYPE, EventRecordings, EventWindow, events_to_channels, load_nmnist,
    read_nmnist_file, window,
)
from spikeviz.encode import Events
from spikeviz.errors import ConfigError, DataError

SHARED_NMNIST = Path(__file__).parents[2] / ".." / "shared" / "data" / "nmnist"
MAX_T_US = 2**23 - 1


# --- helpers ---------------------------------------------------------------------------------

def encode_events(x, y, p, t_us):
    """The N-MNIST bytes of events: [x][y][p << 7 | t >> 16][t >> 8 & 255][t & 255]."""
    out = bytearray()
    for xi, yi, pi, ti in zip(x, y, p, t_us, strict=True):
        out += bytes([xi, yi, (pi << 7) | (ti >> 16), (ti >> 8) & 0xFF, ti & 0xFF])
    return bytes(out)


def naive_decode(data):
    """The slow, obvious twin of the reader: one event at a time."""
    events = []
    for k in range(0, len(data), 5):
        b = data[k:k + 5]
        events.append((b[0], b[1], ((b[2] & 0x7F) << 16) | (b[3] << 8) | b[4], b[2] >> 7))
    return np.array(events, dtype=NMNIST_DTYPE)


def write_file(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def good_bytes(n=10, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 300_000, n))
    return encode_events(rng.integers(0, 34, n).tolist(), rng.integers(0, 34, n).tolist(),
                         rng.integers(0, 2, n).tolist(), t.tolist())


def real_files(split_dir):
    """{(label, id): path} of a split directory."""
    return {(int(path.parent.name), int(path.stem)): path
            for path in sorted(split_dir.glob("*/*.bin")) if path.stem.isdigit()}


def stratified_counts(labels, fraction):
    """The validation count of each class: floor or ceil of its share, round(f * n) in all."""
    per_class = np.bincount(labels, minlength=10)
    return per_class, fraction * per_class, int(np.floor(fraction * len(labels) + 0.5))


def assert_stratified(test_labels, all_labels, fraction):
    _, shares, total = stratified_counts(all_labels, fraction)
    counts = np.bincount(test_labels, minlength=10)
    assert counts.sum() == total
    assert np.all((counts == np.floor(shares)) | (counts == np.ceil(shares)))


def copy_real(destination, per_label, skip=0):
    """Copy ``per_label`` real recordings of each digit (after the first ``skip``)."""
    for label in range(10):
        for path in sorted((SHARED_NMNIST / "Train" / str(label)).glob("*.bin"))[
                skip:skip + per_label]:
            write_file(destination / str(label) / path.name, path.read_bytes())


@pytest.fixture(scope="module")
def shared_nmnist():
    if not (SHARED_NMNIST / "Train" / "0").is_dir():
        pytest.fail(f"the shared N-MNIST recordings are not at {SHARED_NMNIST}: put ../shared "
                    f"beside the repo")
    return SHARED_NMNIST.resolve()


@pytest.fixture(scope="module")
def real(shared_nmnist):
    return load_nmnist(shared_nmnist)


# --- the format ------------------------------------------------------------------------------

def test_dtype_is_tonics_nmnist_dtype():
    # tonic.datasets.NMNIST.dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    assert NMNIST_DTYPE == np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64),
                                     ("p", np.int64)])
    assert NMNIST_DTYPE.names == ("x", "y", "t", "p")


def test_hand_built_records_decode_exactly(tmp_path):
    x = [0, 33, 1, 17, 5, 33]
    y = [0, 33, 2, 16, 9, 0]
    p = [0, 1, 1, 0, 1, 0]
    t = [0, 0, 1, 0x12345, 0x7F0000, MAX_T_US]  # ON with t = 0: the bit must not leak into t
    path = write_file(tmp_path / "rec.bin", encode_events(x, y, p, t))
    events = read_nmnist_file(path)
    assert events.dtype == NMNIST_DTYPE
    assert events["x"].tolist() == x and events["y"].tolist() == y
    assert events["p"].tolist() == p and events["t"].tolist() == t
    assert events["t"][-1] == 8_388_607  # the largest 23-bit timestamp, in microseconds


def test_bit_layout_is_big_endian(tmp_path):
    # x=3, y=4, ON, t = 0x010203: bytes 03 04 81 02 03
    path = write_file(tmp_path / "rec.bin", bytes([3, 4, 0x81, 0x02, 0x03]))
    assert read_nmnist_file(path).tolist() == [(3, 4, 0x010203, 1)]


def test_reader_matches_naive_decoder_on_real_files(shared_nmnist):
    for path in sorted((shared_nmnist / "Train").glob("[37]/*.bin"))[:3]:
        np.testing.assert_array_equal(read_nmnist_file(path), naive_decode(path.read_bytes()))


# --- the real recordings ---------------------------------------------------------------------

def test_real_recordings_load_with_expected_ranges(real):
    recordings = [*real.train_events, *real.test_events]
    assert len(recordings) == 1000
    counts = np.array([r.size for r in recordings])
    assert 1_000 <= counts.min() and counts.max() == 7_152  # README: 1,069 to 7,152
    assert 3_900 <= np.median(counts) <= 4_400
    durations_ms = np.array([(r["t"][-1] - r["t"][0]) / 1000 for r in recordings])
    assert 280 <= durations_ms.min() and durations_ms.max() <= 320
    assert max(r["t"][0] for r in recordings) < 10_000  # starts near t = 0 (us)
    for r in recordings:
        assert r["x"].min() >= 0 and r["x"].max() <= 33
        assert r["y"].min() >= 0 and r["y"].max() <= 33
        assert np.all(np.diff(r["t"]) >= 0)
        assert set(np.unique(r["p"])) <= {0, 1}
    on_fraction = sum(int(r["p"].sum()) for r in recordings) / counts.sum()
    assert 0.45 <= on_fraction <= 0.55
    assert all(0.4 <= r["p"].mean() <= 0.6 for r in recordings)


def test_real_labels_and_ids_match_the_files(real, shared_nmnist):
    files = real_files(shared_nmnist / "Train")
    ids = np.concatenate([real.train_ids, real.test_ids])
    labels = np.concatenate([real.train_labels, real.test_labels])
    assert sorted(ids.tolist()) == list(range(1, 1001))  # 1-based MNIST training indices
    assert set(zip(labels.tolist(), ids.tolist())) == set(files)
    for split in ("train", "test"):
        split_labels, split_ids = getattr(real, f"{split}_labels"), getattr(real, f"{split}_ids")
        assert split_labels.dtype == np.uint8
        assert list(zip(split_labels, split_ids)) == sorted(zip(split_labels, split_ids))
        for i in (0, len(split_ids) // 2, len(split_ids) - 1):
            path = files[(int(split_labels[i]), int(split_ids[i]))]
            np.testing.assert_array_equal(real.recording(split, i), read_nmnist_file(path))


def test_real_directory_without_test_is_a_validation_split(real, shared_nmnist):
    assert real.test_is_validation_split
    assert real.origin == str(shared_nmnist)
    assert real.skipped == ()
    assert len(real.test_events) == 200 and len(real.train_events) == 800


# --- bad files -------------------------------------------------------------------------------

BAD_FILES = {
    "truncated": (good_bytes(6) + b"\x01\x02", "truncated"),
    "empty": (b"", "empty"),
    "x_out": (encode_events([2, 34], [5, 5], [0, 1], [10, 20]), "x = 34"),
    "x_255": (encode_events([255], [0], [1], [10]), "x = 255"),
    "y_out": (encode_events([3, 3, 3], [0, 1, 200], [0, 1, 1], [1, 2, 3]), "y = 200"),
    "y_overflow_marker": (encode_events([0], [240], [0], [5]), "overflow"),
    "backwards": (encode_events([1, 2, 3], [1, 2, 3], [0, 1, 0], [100, 300, 200]),
                  "backwards at event 2: 300 us, then 200 us"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_naming_the_file(tmp_path, case):
    data, expected = BAD_FILES[case]
    path = write_file(tmp_path / f"{case}.bin", data)
    with pytest.raises(DataError, match=expected) as info:
        read_nmnist_file(path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)


def test_equal_timestamps_are_fine(tmp_path):
    path = write_file(tmp_path / "rec.bin", encode_events([1, 2], [1, 2], [0, 1], [50, 50]))
    assert read_nmnist_file(path)["t"].tolist() == [50, 50]


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.bin"):
        read_nmnist_file(tmp_path / "nope.bin")


def _dataset_with_bad_entries(root):
    copy_real(root / "Train", per_label=3)
    bad = {}
    for i, case in enumerate(sorted(BAD_FILES)):
        bad[case] = write_file(root / "Train" / str(i % 10) / f"{90000 + i}.bin",
                               BAD_FILES[case][0])
    bad["label_folder"] = write_file(root / "Train" / "12" / "00001.bin", good_bytes()).parent
    bad["file_name"] = write_file(root / "Train" / "4" / "copy of 00001.bin", good_bytes())
    return bad


@pytest.mark.parametrize("case", sorted(BAD_FILES) + ["label_folder", "file_name"])
def test_dataset_with_one_bad_entry_raises_naming_it(tmp_path, case):
    copy_real(tmp_path / "Train", per_label=2)
    if case == "label_folder":
        bad = write_file(tmp_path / "Train" / "seven" / "00001.bin", good_bytes()).parent
    elif case == "file_name":
        bad = write_file(tmp_path / "Train" / "4" / "copy of 00001.bin", good_bytes())
    else:
        bad = write_file(tmp_path / "Train" / "5" / "99999.bin", BAD_FILES[case][0])
    with pytest.raises(DataError) as info:
        load_nmnist(tmp_path)
    assert str(bad) in str(info.value) and "Fix:" in str(info.value)
    assert "skip_bad" in str(info.value)


def test_skip_bad_skips_and_reports_every_bad_entry(tmp_path):
    bad = _dataset_with_bad_entries(tmp_path)
    data = load_nmnist(tmp_path, skip_bad=True)
    reported = dict(data.skipped)
    assert set(reported) == {str(path) for path in bad.values()}
    assert "not a label" in reported[str(bad["label_folder"])]
    assert "truncated" in reported[str(bad["truncated"])]
    assert "backwards" in reported[str(bad["backwards"])]
    ids = np.concatenate([data.train_ids, data.test_ids])
    assert len(ids) == 30 and ids.max() < 90000  # exactly the 30 good copies remain
    files = real_files(tmp_path / "Train")
    for split in ("train", "test"):
        for i, (label, rec_id) in enumerate(zip(getattr(data, f"{split}_labels"),
                                                getattr(data, f"{split}_ids"))):
            np.testing.assert_array_equal(data.recording(split, i),
                                          read_nmnist_file(files[(int(label), int(rec_id))]))


def test_hidden_entries_and_other_files_are_ignored(tmp_path):
    copy_real(tmp_path / "Train", per_label=2)
    write_file(tmp_path / "Train" / ".cache" / "junk.bin", b"x")
    write_file(tmp_path / "Train" / "3" / "notes.txt", b"not events")
    write_file(tmp_path / "Train" / "README", b"hello")
    data = load_nmnist(tmp_path)
    assert len(data.train_events) + len(data.test_events) == 20 and data.skipped == ()


def test_missing_or_empty_directories_raise(tmp_path):
    with pytest.raises(DataError, match="Train/"):
        load_nmnist(tmp_path / "absent")
    (tmp_path / "Train").mkdir()
    with pytest.raises(DataError, match="point --data-dir at the folder that contains"):
        load_nmnist(tmp_path / "Train")
    with pytest.raises(DataError, match="no readable recordings"):
        load_nmnist(tmp_path)
    write_file(tmp_path / "Train" / "1" / "00001.bin", b"")
    with pytest.raises(DataError, match="all were skipped"):
        load_nmnist(tmp_path, skip_bad=True)


# --- splits ----------------------------------------------------------------------------------

def test_validation_split_is_stratified_reproducible_and_disjoint(real, shared_nmnist):
    labels = np.concatenate([real.train_labels, real.test_labels])
    assert_stratified(real.test_labels, labels, 0.2)
    assert not set(real.train_ids.tolist()) & set(real.test_ids.tolist())
    again = load_nmnist(shared_nmnist, seed=0)
    assert np.array_equal(again.test_ids, real.test_ids)
    assert np.array_equal(again.train_ids, real.train_ids)
    other_seed = load_nmnist(shared_nmnist, seed=1)
    assert not np.array_equal(other_seed.test_ids, real.test_ids)
    assert np.array_equal(np.bincount(other_seed.test_labels, minlength=10),
                          np.bincount(real.test_labels, minlength=10))
    other = load_nmnist(shared_nmnist, seed=1, validation_fraction=0.3)
    assert_stratified(other.test_labels, labels, 0.3)


def test_validation_split_of_small_classes(tmp_path):
    copy_real(tmp_path / "Train", per_label=2)
    data = load_nmnist(tmp_path)  # 20 recordings, 0.2: 4, one each from 4 classes
    assert len(data.test_events) == 4 and len(data.train_events) == 16
    assert_stratified(data.test_labels, np.repeat(np.arange(10, dtype=np.uint8), 2), 0.2)


def test_validation_fraction_is_checked(tmp_path):
    write_file(tmp_path / "Train" / "3" / "00001.bin", good_bytes())
    write_file(tmp_path / "Train" / "5" / "00002.bin", good_bytes())
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="validation_fraction"):
            load_nmnist(tmp_path, validation_fraction=fraction)
    with pytest.raises(DataError, match="leaves a part empty"):  # 0.2 of 2 rounds to 0
        load_nmnist(tmp_path)
    assert len(load_nmnist(tmp_path, validation_fraction=0.5).test_events) == 1


def test_train_and_test_folders_load_both(tmp_path):
    copy_real(tmp_path / "Train", per_label=3)
    copy_real(tmp_path / "Test", per_label=2, skip=3)
    data = load_nmnist(tmp_path, validation_fraction=0.5)
    assert not data.test_is_validation_split
    assert len(data.train_events) == 30 and len(data.test_events) == 20
    assert np.array_equal(data.train_labels, np.repeat(np.arange(10), 3))
    assert np.array_equal(data.test_labels, np.repeat(np.arange(10), 2))
    for split in ("train", "test"):
        files = real_files(tmp_path / split.capitalize())
        for i, key in enumerate(zip(getattr(data, f"{split}_labels").tolist(),
                                    getattr(data, f"{split}_ids").tolist())):
            np.testing.assert_array_equal(data.recording(split, i), read_nmnist_file(files[key]))


def test_small_batches_give_the_same_data(tmp_path, monkeypatch):
    from spikeviz.data import nmnist
    copy_real(tmp_path / "Train", per_label=2)
    copy_real(tmp_path / "Test", per_label=1, skip=2)
    whole = load_nmnist(tmp_path)
    monkeypatch.setattr(nmnist, "_BATCH_BYTES", 1)  # one file per batch
    batched = load_nmnist(tmp_path)
    for split in ("train", "test"):
        a, b = getattr(whole, f"{split}_events"), getattr(batched, f"{split}_events")
        assert len(a) == len(b) and all(np.array_equal(a[i], b[i]) for i in range(len(a)))


def test_recordings_behave_like_a_list(real):
    recordings = real.train_events
    assert isinstance(recordings, EventRecordings)
    n = len(recordings)
    np.testing.assert_array_equal(recordings[-1], recordings[n - 1])
    tail = recordings[n - 3:]
    assert isinstance(tail, EventRecordings) and len(tail) == 3
    np.testing.assert_array_equal(tail[0], recordings[n - 3])
    assert np.array_equal(recordings.n_events, [r.size for r in recordings])
    picked = recordings.subset([5, 2])
    np.testing.assert_array_equal(picked[0], recordings[5])
    np.testing.assert_array_equal(picked[1], recordings[2])
    with pytest.raises(IndexError):
        recordings[n]
    with pytest.raises(ValueError, match="split"):
        real.recording("validation", 0)
    assert not recordings.x.flags.writeable and not real.train_labels.flags.writeable
    recordings[0]["x"][:] = 0  # a copy: the data set is unchanged
    assert recordings[0]["x"].any()


# --- channels --------------------------------------------------------------------------------

def test_channel_mapping_off_block_first():
    events = np.array([(0, 0, 10, 0), (33, 33, 20, 0), (0, 0, 30, 1), (33, 33, 40, 1),
                       (5, 2, 1500, 1), (5, 2, 1500, 0)], dtype=NMNIST_DTYPE)
    stream = events_to_channels(events)
    assert isinstance(stream, Events)
    assert stream.channels.dtype == np.int32 and stream.times_ms.dtype == np.float64
    assert stream.channels.tolist() == [0, 1155, 1156, 2311, 1156 + 2 * 34 + 5, 2 * 34 + 5]
    assert stream.times_ms.tolist() == [0.01, 0.02, 0.03, 0.04, 1.5, 1.5]  # absolute, in ms


def test_channels_of_a_real_recording(real):
    recording = real.train_events[0]
    stream = events_to_channels(recording)
    assert stream.channels.min() >= 0 and stream.channels.max() < 2 * 34 * 34
    assert np.array_equal(stream.channels >= 34 * 34, recording["p"] == 1)
    assert np.array_equal(stream.channels % (34 * 34) % 34, recording["x"])
    assert np.array_equal(stream.channels % (34 * 34) // 34, recording["y"])
    assert np.array_equal(stream.times_ms, recording["t"] / 1000)
    assert np.all(np.diff(stream.times_ms) >= 0)


def test_channels_other_sensor_size_and_bool_polarity():
    events = np.zeros(2, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64),
                                ("p", bool)])  # tonic's generic events_struct
    events[1] = (3, 1, 7, True)
    assert events_to_channels(events, width=4, height=2).channels.tolist() == [0, 8 + 4 + 3]


def test_channels_reject_bad_events():
    good = np.array([(1, 1, 0, 0), (2, 2, 5, 1)], dtype=NMNIST_DTYPE)
    for field_name, value, match in (("x", 34, "outside"), ("y", -1, "outside"),
                                     ("p", 2, "polarities"), ("t", -10, "backwards")):
        bad = good.copy()
        bad[field_name][1] = value
        with pytest.raises(DataError, match=match):
            events_to_channels(bad)
    empty = events_to_channels(good[:0])
    assert empty.times_ms.size == 0 and empty.channels.dtype == np.int32


# --- windows ---------------------------------------------------------------------------------

def test_window_is_a_contiguous_shifted_cut(real):
    recording = real.train_events[3]
    before = recording.copy()
    result = window(recording, 300, np.random.default_rng(7))
    assert isinstance(result, EventWindow) and result.events.dtype == NMNIST_DTYPE
    assert result.events.size == 300 and result.events["t"][0] == 0
    # Locate the cut: the same x, y, p and time steps as 300 consecutive recording events.
    starts = [s for s in range(recording.size - 299)
              if recording["t"][s + 299] - recording["t"][s] == result.events["t"][-1]
              and np.array_equal(recording[["x", "y", "p"]][s:s + 300],
                                 result.events[["x", "y", "p"]])]
    start = starts[0]
    assert np.array_equal(result.events["t"],
                          recording["t"][start:start + 300] - recording["t"][start])
    assert result.duration_ms == (recording["t"][start + 299] - recording["t"][start]) / 1000
    np.testing.assert_array_equal(recording, before)  # the recording is not modified


def test_window_start_is_uniform_over_the_recording():
    n_total, n_events, draws = 20, 5, 8_000
    events = np.zeros(n_total, NMNIST_DTYPE)
    events["t"] = np.arange(n_total) * 1000 + 500
    events["x"] = np.arange(n_total)  # identifies the start
    rng = np.random.default_rng(3)
    starts = np.array([window(events, n_events, rng).events["x"][0] for _ in range(draws)])
    counts = np.bincount(starts, minlength=n_total)
    n_positions = n_total - n_events + 1  # 0..15
    assert counts[n_positions:].sum() == 0 and counts[:n_positions].min() > 0
    expected = draws / n_positions
    chi2 = ((counts[:n_positions] - expected) ** 2 / expected).sum()
    assert chi2 < 40  # 15 degrees of freedom: P(chi2 > 40) < 0.001


def test_window_same_seed_same_window(real):
    recording = real.train_events[0]
    a = window(recording, 300, np.random.default_rng(11))
    b = window(recording, 300, np.random.default_rng(11))
    assert np.array_equal(a.events, b.events) and a.duration_ms == b.duration_ms


def test_short_recording_is_returned_whole_without_a_draw():
    events = np.array([(1, 1, 2000, 1), (2, 2, 2500, 0), (3, 3, 4000, 1)], NMNIST_DTYPE)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    for n_events in (3, 300):
        result = window(events, n_events, rng)
        assert result.events[["x", "y", "p"]].tolist() == events[["x", "y", "p"]].tolist()
        assert result.events["t"].tolist() == [0, 500, 2000] and result.duration_ms == 2.0
    assert rng.bit_generator.state == state
    single = window(events[:1], 300, rng)
    assert single.events["t"].tolist() == [0] and single.duration_ms == 0.0


def test_window_checks_its_arguments():
    events = np.zeros(4, NMNIST_DTYPE)
    for n_events in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="n_events"):
            window(events, n_events, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        window(events, 2, np.random.RandomState(0))


def test_window_then_channels_of_real_recording(real):
    result = window(real.train_events[1], 300, np.random.default_rng(0))
    stream = events_to_channels(result.events)
    assert stream.times_ms[0] == 0.0 and stream.times_ms[-1] == result.duration_ms
    assert stream.channels.size == 300


def test_loading_data_does_not_import_numba():
    code = "import sys, spikeviz.data.nmnist; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
