"""MNIST-style data sets: loading, validation, the resolution order, download and bundled subset.

The download is tested for real over HTTP, but only against servers on 127.0.0.1.
"""

import gzip
import importlib.util
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from spikeviz.data import MNIST, default_cache_dir, load_mnist, resolve_mnist_dir, write_idx
from spikeviz.data import mnist as mnist_module
from spikeviz.data.mnist import BUNDLED_ORIGIN, MNIST_FILES
from spikeviz.errors import DataError

REPO_ROOT = Path(__file__).parents[2]
BUNDLED_DIR = REPO_ROOT / "spikeviz" / "data" / "bundled"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _assert_same_data(loaded, reference):
    for key in MNIST_FILES:
        actual, expected = getattr(loaded, key), getattr(reference, key)
        assert actual.dtype == expected.dtype and np.array_equal(actual, expected), key


def _cache():
    return default_cache_dir("mnist")


# --- the full MNIST --------------------------------------------------------------------------

def test_full_mnist_shapes_and_labels(full_mnist, shared_mnist):
    assert full_mnist.train_images.shape == (60000, 28, 28)
    assert full_mnist.train_labels.shape == (60000,)
    assert full_mnist.test_images.shape == (10000, 28, 28)
    assert full_mnist.test_labels.shape == (10000,)
    assert full_mnist.train_images.dtype == full_mnist.train_labels.dtype == np.uint8
    assert full_mnist.train_labels[0] == 5 and full_mnist.test_labels[0] == 7
    assert np.bincount(full_mnist.train_labels).tolist() == TRAIN_COUNTS
    assert np.bincount(full_mnist.test_labels).tolist() == TEST_COUNTS
    assert full_mnist.origin == str(shared_mnist) and full_mnist.name == "mnist"
    assert not full_mnist.train_images.flags.writeable
    assert "origin=" in repr(full_mnist) and len(repr(full_mnist)) < 200


def test_uncompressed_copies_load_identically(tmp_path, shared_mnist, full_mnist):
    for fname in MNIST_FILES.values():
        raw = gzip.decompress((shared_mnist / fname).read_bytes())
        (tmp_path / fname.removesuffix(".gz")).write_bytes(raw)
    _assert_same_data(load_mnist(tmp_path), full_mnist)


# --- validation ------------------------------------------------------------------------------

def test_label_count_must_match_image_count(tmp_path, make_idx_set):
    make_idx_set(tmp_path)
    labels = np.zeros(11, np.uint8)  # 12 images
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*11 labels for 12 images"):
        load_mnist(tmp_path)


def test_labels_must_be_digits():
    images = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*0..9.*Fix:"):
        MNIST(images, np.uint8([0, 9]), images, np.uint8([3, 10]), origin="here")


@pytest.mark.parametrize("bad", ["dtype", "ndim", "size"])
def test_images_must_be_uint8_stacks_of_equal_size(bad):
    images, labels = np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8)
    test_images = {"dtype": images.astype(np.float32), "ndim": images.reshape(2, 784),
                   "size": np.zeros((2, 14, 14), np.uint8)}[bad]
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        MNIST(images, labels, test_images, labels, origin="here")


def test_directory_with_a_file_missing(tmp_path, make_idx_set):
    make_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path)
    message = str(excinfo.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and str(tmp_path) in message
    assert "Fix:" in message


def test_corrupt_file_in_explicit_directory_is_an_error_not_a_fallback(tmp_path, make_idx_set):
    make_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*Fix:"):
        load_mnist(tmp_path)


def test_fashion_mnist_like_set_loads_from_data_dir(tmp_path, make_idx_set):
    arrays = make_idx_set(tmp_path, suffix="")
    fashion = load_mnist(tmp_path, name="fashion-mnist")
    assert fashion.name == "fashion-mnist" and fashion.origin == str(tmp_path)
    for key, array in arrays.items():
        np.testing.assert_array_equal(getattr(fashion, key), array)


def test_other_names_are_not_downloaded_or_bundled(tmp_path):
    with pytest.raises(DataError, match="fashion-mnist.*Only 'mnist' can be downloaded"):
        load_mnist(name="fashion-mnist")
    with pytest.raises(DataError, match="only 'mnist' is bundled"):
        load_mnist(bundled=True, name="fashion-mnist")
    assert not (tmp_path / "cache").exists()


def test_other_names_load_from_their_cache(make_idx_set):
    arrays = make_idx_set(default_cache_dir("fashion-mnist"))
    fashion = load_mnist(name="fashion-mnist", download=False)
    np.testing.assert_array_equal(fashion.test_labels, arrays["test_labels"])


# --- resolution order ------------------------------------------------------------------------

@pytest.fixture
def cached_mnist(shared_mnist):
    """The real MNIST files copied into the (tmp_path) cache."""
    shutil.copytree(shared_mnist, _cache(), copy_function=shutil.copyfile)
    return _cache()


def test_explicit_dir_beats_env_var(tmp_path, monkeypatch, make_idx_set):
    make_idx_set(tmp_path / "explicit", seed=1)
    make_idx_set(tmp_path / "env", seed=2)
    monkeypatch.setenv("SPIKEVIZ_DATA", str(tmp_path / "env"))
    assert resolve_mnist_dir(tmp_path / "explicit") == (tmp_path / "explicit",
                                                         str(tmp_path / "explicit"))


def test_env_var_beats_cache(tmp_path, monkeypatch, make_idx_set, cached_mnist):
    arrays = make_idx_set(tmp_path / "env")
    monkeypatch.setenv("SPIKEVIZ_DATA", str(tmp_path / "env"))
    loaded = load_mnist()
    assert loaded.origin == str(tmp_path / "env")
    np.testing.assert_array_equal(loaded.train_labels, arrays["train_labels"])


def test_env_var_with_missing_files_is_an_error(tmp_path, monkeypatch, cached_mnist):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("SPIKEVIZ_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError, match="SPIKEVIZ_DATA.*lacks train-images-idx3-ubyte.gz"):
        load_mnist()


def test_valid_cache_is_used_without_network(cached_mnist, full_mnist, caplog):
    with caplog.at_level(logging.WARNING, logger="spikeviz.data"):
        loaded = load_mnist(download=True)  # the mirror is dead: the cache must suffice
    assert loaded.origin == str(cached_mnist) and not caplog.records
    _assert_same_data(loaded, full_mnist)


def test_empty_cache_without_download_falls_back_to_bundled(caplog):
    with caplog.at_level(logging.WARNING, logger="spikeviz.data"):
        loaded = load_mnist(download=False)
    assert loaded.origin == BUNDLED_ORIGIN
    (record,) = caplog.records
    assert record.name == "spikeviz.data" and record.levelno == logging.WARNING
    assert "does not exist" in record.message and "download=False" in record.message
    assert "bundled subset" in record.message
    assert not _cache().exists()


def test_corrupt_cache_is_not_trusted(cached_mnist, caplog):
    path = cached_mnist / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="spikeviz.data"):
        assert load_mnist(download=False).origin == BUNDLED_ORIGIN
    assert "t10k-labels-idx1-ubyte.gz has the wrong SHA256" in caplog.text


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir("fashion-mnist") == tmp_path / "cache" / "fashion-mnist"
    monkeypatch.delenv("SPIKEVIZ_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == ("spikeviz", "mnist")
    with pytest.raises(DataError, match="plain directory name"):
        default_cache_dir("../mnist")


# --- download, over HTTP on 127.0.0.1 --------------------------------------------------------

@pytest.fixture
def live_mirror(tmp_path, shared_mnist, serve_dir):
    """URL of a local server holding copies of the real files."""
    shutil.copytree(shared_mnist, tmp_path / "mirror", copy_function=shutil.copyfile)
    return serve_dir(tmp_path / "mirror")


@pytest.fixture
def bad_mirror(tmp_path, serve_dir):
    """URL of a local server whose files have the right names and the wrong content."""
    (tmp_path / "bad").mkdir()
    for fname in MNIST_FILES.values():
        (tmp_path / "bad" / fname).write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\0"))
    return serve_dir(tmp_path / "bad")


def test_download_tries_mirrors_in_order(monkeypatch, dead_mirror, live_mirror, full_mnist,
                                         caplog):
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", (dead_mirror, live_mirror))
    with caplog.at_level(logging.WARNING, logger="spikeviz.data"):
        loaded = load_mnist()
    assert loaded.origin == str(_cache()) and not caplog.records
    assert sorted(entry.name for entry in _cache().iterdir()) == sorted(MNIST_FILES.values())
    _assert_same_data(loaded, full_mnist)


def test_download_rejects_wrong_checksum(monkeypatch, bad_mirror, caplog):
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", (bad_mirror,))
    with caplog.at_level(logging.WARNING, logger="spikeviz.data"):
        loaded = load_mnist()
    assert loaded.origin == BUNDLED_ORIGIN
    assert "SHA256 hash of downloaded file" in caplog.text
    assert list(_cache().iterdir()) == []  # neither the bad file nor a temporary file


def test_download_moves_on_after_a_bad_mirror(monkeypatch, bad_mirror, live_mirror,
                                              full_mnist):
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", (bad_mirror, live_mirror))
    _assert_same_data(load_mnist(), full_mnist)
    assert sorted(entry.name for entry in _cache().iterdir()) == sorted(MNIST_FILES.values())


def test_failed_download_is_reported_in_the_error_when_bundled_is_missing(monkeypatch,
                                                                         tmp_path):
    monkeypatch.setattr(mnist_module.importlib.resources, "files", lambda package: tmp_path)
    with pytest.raises(DataError) as excinfo:
        load_mnist()
    message = str(excinfo.value)
    for step in ("user cache", "download into", "Connection refused", "bundled subset"):
        assert step in message


# --- the bundled subset ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled():
    return load_mnist(bundled=True)


def test_bundled_subset_is_small_and_balanced(bundled):
    assert bundled.origin == BUNDLED_ORIGIN
    assert bundled.train_images.shape == (5000, 28, 28)
    assert bundled.test_images.shape == (1000, 28, 28)
    assert np.bincount(bundled.train_labels).tolist() == [500] * 10
    assert np.bincount(bundled.test_labels).tolist() == [100] * 10
    assert len(set(bundled.train_labels[:30].tolist())) >= 8  # classes are interleaved
    assert sum(path.stat().st_size for path in BUNDLED_DIR.iterdir()) <= 2_000_000


def test_bundled_images_are_the_first_real_ones_of_each_class(bundled, full_mnist):
    for split, per_class in (("train", 500), ("test", 100)):
        images = getattr(full_mnist, f"{split}_images")
        labels = getattr(full_mnist, f"{split}_labels")
        first = np.concatenate([np.flatnonzero(labels == digit)[:per_class]
                                for digit in range(10)])
        expected = {(int(labels[i]), images[i].tobytes()) for i in first}
        subset = zip(getattr(bundled, f"{split}_labels"), getattr(bundled, f"{split}_images"))
        assert {(int(label), image.tobytes()) for label, image in subset} == expected


@pytest.mark.slow  # level-9 gzip of the subset: about 1.5 s
def test_bundle_script_reproduces_the_bundled_files(tmp_path, shared_mnist, capsys):
    spec = importlib.util.spec_from_file_location(
        "make_bundled_subset", REPO_ROOT / "scripts" / "make_bundled_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--source", str(shared_mnist), "--out", str(tmp_path / "out")])
    assert "total:" in capsys.readouterr().out
    for fname in MNIST_FILES.values():
        assert (tmp_path / "out" / fname).read_bytes() == (BUNDLED_DIR / fname).read_bytes()

