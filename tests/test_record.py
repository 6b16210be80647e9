"""Ring logs between the training thread and the views: wrap-around, bounded memory, and no loss
or duplication under a concurrent writer."""

import threading
import time

import numpy as np
import pytest

from spikeviz.record import Latest, RingLog, Thinned, TrainingRecord


def seq_log(capacity):
    return RingLog(capacity, seq=np.int64, half=np.float32)


def append_range(log, start, stop):
    values = np.arange(start, stop)
    return log.append(seq=values, half=values / 2)


def test_rows_come_back_in_order_with_their_sequence_numbers():
    log = seq_log(8)
    assert append_range(log, 0, 3) == 3
    chunk = log.read(0)
    assert (chunk.start, chunk.stop, chunk.missed, len(chunk)) == (0, 3, 0, 3)
    np.testing.assert_array_equal(chunk.data["seq"], [0, 1, 2])
    assert chunk.data["half"].dtype == np.float32
    np.testing.assert_array_equal(chunk.data["half"], [0.0, 0.5, 1.0])
    assert len(log.read(chunk.stop)) == 0  # nothing new


def test_a_single_row_can_be_appended_as_scalars():
    log = RingLog(4, sample=np.int64, text=object)
    log.append(sample=7, text="kappa_hidden -0.4 -> -0.8")
    chunk = log.read(0)
    assert chunk.data["sample"].tolist() == [7]
    assert chunk.data["text"].tolist() == ["kappa_hidden -0.4 -> -0.8"]


def test_wrap_around_keeps_the_newest_rows_and_reports_what_a_reader_missed():
    log = seq_log(5)
    append_range(log, 0, 3)
    append_range(log, 3, 7)  # wraps: rows 0 and 1 are overwritten
    chunk = log.read(0)
    np.testing.assert_array_equal(chunk.data["seq"], [2, 3, 4, 5, 6])
    assert (chunk.start, chunk.stop, chunk.missed) == (2, 7, 2)
    np.testing.assert_array_equal(log.read(4).data["seq"], [4, 5, 6])  # across the seam
    assert log.total == 7 and log.dropped == 2


def test_a_chunk_longer_than_the_capacity_keeps_its_tail():
    log = seq_log(4)
    append_range(log, 0, 10)
    chunk = log.read(0)
    np.testing.assert_array_equal(chunk.data["seq"], [6, 7, 8, 9])
    assert chunk.missed == 6 and log.dropped == 6 and log.total == 10


def test_max_rows_and_until_select_the_newest_rows_or_a_recorded_range():
    log = seq_log(16)
    append_range(log, 0, 10)
    newest = log.read(2, max_rows=3)
    np.testing.assert_array_equal(newest.data["seq"], [7, 8, 9])
    assert newest.missed == 5  # 2..6 skipped on purpose
    window = log.read(3, until=6)
    np.testing.assert_array_equal(window.data["seq"], [3, 4, 5])
    assert window.stop == 6


def test_memory_is_fixed_whatever_is_appended():
    log = seq_log(100)
    before = log.nbytes
    for start in range(0, 100_000, 1_000):
        append_range(log, start, start + 1_000)
    assert log.nbytes == before == 100 * (8 + 4)
    record = TrainingRecord(spike_capacity=1_000, potential_capacity=1_000)
    size = record.nbytes
    for sample in range(50):
        record.spikes.append(sample=np.full(300, sample), t_ms=np.linspace(0, 50, 300),
                             layer=np.zeros(300), neuron=np.arange(300))
    assert record.nbytes == size
    assert record.spikes.dropped == 50 * 300 - 1_000


def test_appends_with_wrong_columns_are_refused():
    log = seq_log(4)
    with pytest.raises(ValueError, match="exactly the columns"):
        log.append(seq=[1])
    with pytest.raises(ValueError, match="different lengths"):
        log.append(seq=[1, 2], half=[0.5])
    with pytest.raises(ValueError, match="capacity"):
        RingLog(0, seq=np.int64)


def drain_concurrently(capacity, n_chunks, seed):
    """A writer thread appends ``n_chunks`` chunks of consecutive integers while this thread
    drains; returns (values read, total missed, total appended, reads that found rows)."""
    log = seq_log(capacity)
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 50, n_chunks)
    done = threading.Event()

    def write():
        start = 0
        for i, size in enumerate(sizes):
            append_range(log, start, start + size)
            start += size
            if i % 100 == 0:
                time.sleep(0)  # let the reader in, so that reads and writes interleave
        done.set()

    writer = threading.Thread(target=write)
    seen, missed, since, reads = [], 0, 0, 0
    writer.start()
    while True:
        finished = done.is_set()
        chunk = log.read(since)
        assert chunk.start == since + chunk.missed
        seen.append(chunk.data["seq"])
        reads += len(chunk) > 0
        np.testing.assert_array_equal(chunk.data["half"], chunk.data["seq"] / 2)  # whole rows
        missed += chunk.missed
        since = chunk.stop
        if finished and since == log.total:
            break
    writer.join()
    return np.concatenate(seen), missed, int(sizes.sum()), reads


def test_a_concurrent_reader_that_keeps_up_sees_every_row_exactly_once():
    values, missed, total, reads = drain_concurrently(capacity=1_000_000, n_chunks=5_000, seed=1)
    assert reads > 1 and missed == 0
    np.testing.assert_array_equal(values, np.arange(total))


def test_a_concurrent_reader_left_behind_loses_rows_it_is_told_about_and_never_repeats():
    values, missed, total, _ = drain_concurrently(capacity=64, n_chunks=5_000, seed=2)
    assert np.all(np.diff(values) > 0)  # in order, no duplicate
    assert values.size + missed == total  # every row either read once or counted as missed
    assert values[-1] == total - 1


def test_latest_hands_out_a_value_once_per_version():
    slot = Latest()
    assert slot.take(0) == (None, 0)
    assert slot.publish({"a": 1}) == 1
    value, version = slot.take(0)
    assert value == {"a": 1} and version == 1
    assert slot.take(version) == (None, 1)
    slot.publish({"a": 2})
    assert slot.take(version)[0] == {"a": 2}
    assert slot.peek() == {"a": 2}


def test_a_reader_drains_each_log_from_where_it_stopped():
    record = TrainingRecord(sample_capacity=10)
    reader = record.reader()
    record.markers.append(sample=3, text="alpha 3 -> 4")
    assert reader.read("markers").data["text"].tolist() == ["alpha 3 -> 4"]
    assert len(reader.read("markers")) == 0
    record.markers.append(sample=9, text="epoch 1 done")
    assert reader.read("markers").data["sample"].tolist() == [9]
    record.network.publish({"sample": 1})
    assert reader.take("network") == {"sample": 1}
    assert reader.take("network") is None
    late = record.reader(from_start=False)
    assert len(late.read("markers")) == 0


def thinned_series(capacity, n, chunk):
    series = Thinned(capacity, i=np.int64, x=np.float64)
    for start in range(0, n, chunk):
        i = np.arange(start, min(start + chunk, n))
        series.append(i=i, x=i * 0.5)
    return series


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_thinned_keeps_evenly_spaced_rows_of_the_whole_history_within_its_capacity(chunk):
    series = thinned_series(capacity=16, n=1000, chunk=chunk)
    data = series.data(with_last=False)
    assert series.total == 1000
    assert len(data["i"]) <= 16
    assert series.stride == 64  # 1000 rows: 16 rows at stride 64 would need 1024
    np.testing.assert_array_equal(data["i"], np.arange(0, 1000, 64))
    np.testing.assert_array_equal(data["x"], data["i"] * 0.5)


def test_thinned_ends_at_the_newest_row_and_keeps_everything_while_it_fits():
    short = thinned_series(capacity=16, n=10, chunk=3)
    np.testing.assert_array_equal(short.data()["i"], np.arange(10))
    long = thinned_series(capacity=16, n=1000, chunk=7)
    assert long.data()["i"][-1] == 999
    assert len(long.data()["i"]) == len(long.data(with_last=False)["i"]) + 1


def test_thinned_memory_does_not_grow_with_the_series():
    series = thinned_series(capacity=8, n=10, chunk=10)
    columns = [id(column) for column in series._columns.values()]
    for start in range(10, 100_000, 5000):
        series.append(i=np.arange(start, start + 5000), x=np.zeros(5000))
    assert [id(column) for column in series._columns.values()] == columns
    assert series.size <= 8
