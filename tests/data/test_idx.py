"""The IDX reader and writer: round trips, the exact byte layout, and every way a file breaks."""

import gzip
import time

import numpy as np
import pytest

from spikeviz.data import read_idx, write_idx
from spikeviz.errors import DataError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
SHAPES = [(5,), (3, 4), (2, 3, 4), (1, 2, 1, 3)]


def _random_array(dtype, shape, rng):
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path, dtype, shape, suffix):
    array = _random_array(dtype, shape, np.random.default_rng(0))
    path = tmp_path / f"array.idx{suffix}"
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    result = read_idx(path)
    assert result.shape == shape
    assert result.dtype == np.dtype(dtype)  # native byte order
    np.testing.assert_array_equal(result, array)
    assert not result.flags.writeable


def test_file_layout_is_big_endian_idx(tmp_path):
    path = tmp_path / "a.idx"
    write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype="<i2"))
    header = bytes([0, 0, 0x0B, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    data = b"".join(value.to_bytes(2, "big") for value in range(1, 7))
    assert path.read_bytes() == header + data


def test_byte_order_of_input_does_not_matter(tmp_path):
    values = np.arange(-5, 7, dtype=np.float64).reshape(3, 4) / 3
    write_idx(tmp_path / "little", values.astype("<f8"))
    write_idx(tmp_path / "big", values.astype(">f8"))
    assert (tmp_path / "little").read_bytes() == (tmp_path / "big").read_bytes()


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "raw.gz", array, compress=False)
    write_idx(tmp_path / "zipped.idx", array, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "raw.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "zipped.idx"), array)


def test_gzip_output_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.int32)
    write_idx(tmp_path / "a.gz", array)
    time.sleep(0.01)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.zeros(3, np.uint8))
    write_idx(path, np.ones(4, np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.ones(4, np.uint8))
    with pytest.raises(DataError, match="int64"):
        write_idx(path, np.ones(4, np.int64))
    np.testing.assert_array_equal(read_idx(path), np.ones(4, np.uint8))
    assert [entry.name for entry in tmp_path.iterdir()] == ["labels.gz"]


@pytest.mark.parametrize("array", [np.float16([1.0]), np.array([True]), np.uint8(3)],
                         ids=["float16", "bool", "0-d"])
def test_write_rejects_what_idx_cannot_hold(tmp_path, array):
    with pytest.raises(DataError, match="Fix:"):
        write_idx(tmp_path / "x.idx", array)
    assert list(tmp_path.iterdir()) == []


def _valid_idx_bytes():
    """A raw IDX file: 2 x 3 uint8."""
    return bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


def _gzip_cut_short(content):
    return gzip.compress(content)[:-12]


def _gzip_bad_crc(content):
    zipped = bytearray(gzip.compress(content))
    zipped[-8] ^= 0xFF  # the CRC32 of the trailer
    return bytes(zipped)


BROKEN_FILES = {
    "bad magic": (b"<htm" + _valid_idx_bytes()[4:], "not an IDX file"),
    "empty": (b"", "not an IDX file"),
    "dtype code": (bytes([0, 0, 0x07]) + _valid_idx_bytes()[3:], "dtype code 0x07"),
    "zero dimensions": (bytes([0, 0, 8, 0]), "0 dimensions"),
    "header cut short": (_valid_idx_bytes()[:9], "broken header"),
    "truncated payload": (_valid_idx_bytes()[:-1], "truncated"),
    "trailing bytes": (_valid_idx_bytes() + b"\0", "trailing bytes"),
    "gzip cut short": (_gzip_cut_short(_valid_idx_bytes()), "not a valid gzip"),
    "gzip bad crc": (_gzip_bad_crc(_valid_idx_bytes()), "not a valid gzip"),
    "gzip of truncated payload": (gzip.compress(_valid_idx_bytes()[:-2]), "truncated"),
}


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_broken_file_raises_data_error_naming_file_and_fix(tmp_path, case):
    content, expected = BROKEN_FILES[case]
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as excinfo:
        read_idx(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert "Fix:" in message and "SPIKEVIZ_DATA" in message


def test_size_mismatch_says_expected_and_found(tmp_path):
    path = tmp_path / "a.idx"
    path.write_bytes(_valid_idx_bytes()[:-2])
    with pytest.raises(DataError, match=r"\(2, 3\).*6 bytes of data.*but 4 bytes"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nothing.gz")


def test_reads_the_real_train_images_fast(shared_mnist):
    start = time.perf_counter()
    images = read_idx(shared_mnist / "train-images-idx3-ubyte.gz")
    elapsed_s = time.perf_counter() - start
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert elapsed_s < 3.0  # about 0.25 s on a development machine; generous for CI
