"""MNIST-style data sets: the four standard IDX files, and where they come from.

Any set of IDX files with the standard MNIST names (MNIST, Fashion-MNIST, KMNIST) loads the
same way. :func:`resolve_mnist_dir` finds the directory, in this order:

a. the ``data_dir`` argument (``--data-dir``), if given: it must hold the four files;
b. the ``SPIKEVIZ_DATA`` environment variable, if set: same rule;
c. the user cache, :func:`default_cache_dir`, if it holds the four files (for ``mnist``:
   with the right SHA256);
d. for ``mnist`` only, and when ``download=True``: download from :data:`MNIST_MIRRORS` into
   the cache, verifying each file's SHA256 (pooch writes to a temporary file and keeps it
   only when the checksum matches);
e. for ``mnist`` only: the balanced subset shipped in the package (5,000 train / 1,000 test
   real digits), with a logged warning that says what was tried and why it failed.

Nothing is written anywhere but the cache directory. The MNIST database is by LeCun, Cortes
and Burges, distributed under CC BY-SA 3.0.
"""

import hashlib
import importlib.resources
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs

from spikeviz.data.idx import read_idx
from spikeviz.errors import DataError

__all__ = ["MNIST", "default_cache_dir", "load_mnist", "resolve_mnist_dir"]

_log = logging.getLogger("spikeviz.data")

#: The standard file of each array; an uncompressed copy has the same name without ".gz".
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

#: Public mirrors of the original MNIST files, tried in this order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: SHA256 of the original MNIST files, gzipped as distributed and uncompressed.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "train-images-idx3-ubyte":
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte":
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte":
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte":
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

BUNDLED_ORIGIN = "bundled subset (5,000 train / 1,000 test)"
DOWNLOAD_TIMEOUT_S = 10
_FIX = "point --data-dir / SPIKEVIZ_DATA at a directory with the four MNIST files"


@dataclass(frozen=True, eq=False)
class MNIST:
    """The four arrays of an MNIST-style data set, checked for shape, dtype and labels.

    Attributes
    ----------
    train_images : numpy.ndarray
        Shape ``(n_train, height, width)``, uint8 intensities 0..255 (MNIST: 28 x 28).
    train_labels : numpy.ndarray
        Shape ``(n_train,)``, uint8 classes 0..9.
    test_images : numpy.ndarray
        Shape ``(n_test, height, width)``, uint8, same height and width as the training set.
    test_labels : numpy.ndarray
        Shape ``(n_test,)``, uint8 classes 0..9.
    origin : str
        Where the data came from: a directory path, or :data:`BUNDLED_ORIGIN`.
    name : str
        The data set's name, e.g. ``"mnist"`` or ``"fashion-mnist"``.

    Raises
    ------
    DataError
        On construction, if an array has the wrong shape or dtype, or a label is above 9;
        the message names the file the array comes from.
    """

    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    origin: str
    name: str = "mnist"

    def __post_init__(self):
        self._check_split("train")
        self._check_split("test")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            self._fail("test_images", f"test images are {self.test_images.shape[1:]} pixels "
                       f"but training images are {self.train_images.shape[1:]}")

    def _check_split(self, split):
        images = getattr(self, f"{split}_images")
        labels = getattr(self, f"{split}_labels")
        if images.ndim != 3 or images.dtype != np.uint8:
            self._fail(f"{split}_images", f"expected (n, height, width) uint8 images, "
                       f"found shape {images.shape} {images.dtype}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            self._fail(f"{split}_labels", f"expected (n,) uint8 labels, "
                       f"found shape {labels.shape} {labels.dtype}")
        if len(labels) != len(images):
            self._fail(f"{split}_labels", f"{len(labels):,} labels for {len(images):,} images "
                       f"in {_stem(MNIST_FILES[f'{split}_images'])}")
        if labels.size and labels.max() > 9:
            self._fail(f"{split}_labels", f"labels must be 0..9, found {labels.max()}")

    def _fail(self, key, problem):
        raise DataError(f"{self.name} file {_stem(MNIST_FILES[key])} (from {self.origin}): "
                        f"{problem}. Fix: replace it with a valid copy, or {_FIX}.")


def load_mnist(data_dir=None, *, download=True, bundled=False, name="mnist"):
    """Load an MNIST-style data set, from the first place that has it.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory with the four standard files (gzipped or not). When given, it must hold
        them: there is no fallback.
    download : bool, optional
        Allow downloading MNIST into the cache when the cache lacks it.
    bundled : bool, optional
        Use the subset shipped in the package (5,000 train / 1,000 test) straight away.
    name : str, optional
        Data set name; also the cache subdirectory. Only ``"mnist"`` can be downloaded or
        is bundled; other sets (e.g. ``"fashion-mnist"``) come from a directory or the cache.

    Returns
    -------
    MNIST
        Read-only arrays: images ``(n, 28, 28)`` uint8, labels ``(n,)`` uint8.

    Raises
    ------
    DataError
        If no source has valid data; the message lists each step tried and why it failed.
    """
    if bundled:
        directory, origin = _bundled_dir(name, tried=[]), BUNDLED_ORIGIN
    else:
        directory, origin = resolve_mnist_dir(data_dir, download=download, name=name)
    arrays = {key: read_idx(_find_file(directory, fname)) for key, fname in MNIST_FILES.items()}
    return MNIST(**arrays, origin=origin, name=name)


def resolve_mnist_dir(data_dir=None, *, download=True, name="mnist"):
    """Find the directory of an MNIST-style data set (see the module docstring for the order).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Explicit directory; must hold the four files.
    download : bool, optional
        Allow downloading MNIST into the cache.
    name : str, optional
        Data set name and cache subdirectory.

    Returns
    -------
    directory : pathlib.Path
        Holds the four files, each gzipped or not.
    origin : str
        The directory as a string, or :data:`BUNDLED_ORIGIN`.

    Raises
    ------
    DataError
        If the explicit directory (argument or ``SPIKEVIZ_DATA``) lacks a file, or if no
        step found the data; the message lists each step tried and why it failed.
    """
    if data_dir is not None:
        return _explicit_dir(Path(data_dir).expanduser(), "data_dir (--data-dir)")
    if os.environ.get("SPIKEVIZ_DATA"):
        return _explicit_dir(Path(os.environ["SPIKEVIZ_DATA"]).expanduser(), "SPIKEVIZ_DATA")
    cache = default_cache_dir(name)
    problem = _cache_problem(cache, name)
    if problem is None:
        return cache, str(cache)
    tried = [f"user cache {cache}: {problem}"]
    if name != "mnist":
        raise DataError(f"no {name} data found. Tried: {'; '.join(tried)}. Only 'mnist' can be "
                        f"downloaded or is bundled. Fix: put the four {name} IDX files in "
                        f"{cache}, or point --data-dir / SPIKEVIZ_DATA at a directory with "
                        f"them.")
    if download:
        problem = _download_mnist(cache)
        if problem is None:
            return cache, str(cache)
        tried.append(f"download into {cache}: {problem}")
    else:
        tried.append("download: skipped (download=False)")
    directory = _bundled_dir(name, tried)
    _log.warning("Using the MNIST %s, not the full data set. Tried: %s. For the full set, "
                 "allow the download, or %s.", BUNDLED_ORIGIN, "; ".join(tried), _FIX)
    return directory, BUNDLED_ORIGIN


def default_cache_dir(name="mnist"):
    """Return the cache directory of a data set; it may not exist yet.

    Parameters
    ----------
    name : str, optional
        Data set name, a plain directory name.

    Returns
    -------
    pathlib.Path
        ``$SPIKEVIZ_CACHE_DIR/name`` if that variable is set, otherwise
        ``platformdirs.user_cache_path("spikeviz") / name``.
    """
    if not name or name in (".", "..") or Path(name).name != name:
        raise DataError(f"data set name {name!r} must be a plain directory name, such as "
                        f"'mnist' or 'fashion-mnist'. Fix: pass such a name.")
    root = os.environ.get("SPIKEVIZ_CACHE_DIR")
    if root:
        return Path(root).expanduser() / name
    return platformdirs.user_cache_path("spikeviz", appauthor=False) / name


def _find_file(directory, fname):
    """Return the gzipped or else the uncompressed copy of ``fname`` in ``directory``.

    When neither exists, return the gzipped path, which read_idx reports as missing.
    """
    for candidate in (fname, _stem(fname)):
        if (directory / candidate).is_file():
            return directory / candidate
    return directory / fname


def _missing_files(directory):
    """Names of the standard files that ``directory`` lacks (in neither form)."""
    return [fname for fname in MNIST_FILES.values() if not _find_file(directory, fname).is_file()]


def _explicit_dir(directory, source):
    """Return ``(directory, origin)`` if it holds the four files, else raise DataError."""
    if not directory.is_dir():
        problem = f"is not a directory; it must hold {', '.join(MNIST_FILES.values())}"
    elif missing := _missing_files(directory):
        problem = f"lacks {', '.join(missing)} (neither gzipped nor uncompressed)"
    else:
        return directory, str(directory)
    raise DataError(f"{source}: {directory} {problem}. Fix: copy the files there, or unset "
                    f"{source} to use the cache, download or bundled subset.")


def _cache_problem(cache, name):
    """Why the cache cannot serve ``name``, or None if it holds the four (verified) files."""
    if not cache.is_dir():
        return "does not exist"
    if missing := _missing_files(cache):
        return f"lacks {', '.join(missing)}"
    if name == "mnist":
        for fname in MNIST_FILES.values():
            path = _find_file(cache, fname)
            if _sha256(path) != MNIST_SHA256[path.name]:
                return f"{path.name} has the wrong SHA256 (corrupt or partial)"
    return None


def _sha256(path):
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _download_mnist(cache):
    """Download the four MNIST files into ``cache``; return None, or why it failed.

    Each mirror is asked, in order, for the files not yet fetched; a mirror's first failure
    moves on to the next mirror, so an offline machine waits at most one timeout per mirror.
    """
    import pooch  # imports requests: slow, and needed only here

    downloader = pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S, chunk_size=2**16)
    remaining = list(MNIST_FILES.values())
    failures = []
    for mirror in MNIST_MIRRORS:
        for fname in list(remaining):
            try:
                pooch.retrieve(mirror + fname, known_hash=f"sha256:{MNIST_SHA256[fname]}",
                               path=cache, fname=fname, downloader=downloader)
            except (OSError, ValueError) as exc:  # requests' errors are OSErrors
                failures.append(f"{mirror}{fname}: {exc}")
                break
            remaining.remove(fname)
        if not remaining:
            return None
    return " | ".join(failures)


def _bundled_dir(name, tried):
    """Return the packaged subset's directory, or raise DataError listing ``tried``."""
    directory = Path(str(importlib.resources.files(__package__) / "bundled"))
    if name != "mnist":
        problem = f"only 'mnist' is bundled, not {name!r}"
    elif missing := _missing_files(directory):
        problem = f"{directory} lacks {', '.join(missing)} (broken install?)"
    else:
        return directory
    steps = "; ".join([*tried, f"bundled subset: {problem}"])
    raise DataError(f"no {name} data found. Tried: {steps}. Fix: reinstall spikeviz, allow "
                    f"the download, or {_FIX}.")


def _stem(fname):
    return fname.removesuffix(".gz")
