"""Fixtures of the data tests: the real MNIST, small synthetic IDX sets, a local HTTP mirror.

Every test runs with SPIKEVIZ_CACHE_DIR in its tmp_path, SPIKEVIZ_DATA unset and the MNIST
mirrors pointing at a dead localhost port: no test writes outside tmp_path or leaves the
machine.
"""

import functools
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from spikeviz.data import load_mnist, write_idx
from spikeviz.data import mnist as mnist_module

#: The full, original MNIST that every development machine and CI run has (read-only).
SHARED_MNIST = Path(__file__).parents[2] / ".." / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def isolated_data_env(monkeypatch, tmp_path):
    """Cache in tmp_path, no SPIKEVIZ_DATA, no proxies, and mirrors that refuse connections."""
    monkeypatch.setenv("SPIKEVIZ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SPIKEVIZ_DATA", raising=False)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                  "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", (dead_url(),))


@pytest.fixture(scope="session")
def shared_mnist():
    """Directory of the four original MNIST files."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        # Development machines and CI always have it: a missing copy is a broken set-up,
        # not a reason to skip.
        pytest.fail(f"the shared MNIST is not at {SHARED_MNIST}: put ../shared beside the repo")
    return SHARED_MNIST.resolve()


@pytest.fixture(scope="session")
def full_mnist(shared_mnist):
    """The full MNIST, loaded once for the session."""
    return load_mnist(shared_mnist)


def write_idx_set(directory, n_train=12, n_test=6, seed=0, suffix=".gz"):
    """Write a small MNIST-style set (random 28 x 28 images) with the standard file names.

    Returns
    -------
    dict
        The arrays written, keyed like the fields of MNIST.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, array in arrays.items():
        write_idx(directory / (mnist_module.MNIST_FILES[key].removesuffix(".gz") + suffix), array)
    return arrays


def dead_url():
    """A localhost URL whose port refuses connections (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve_dir():
    """Serve directories over HTTP on 127.0.0.1; call it with a directory, get its URL."""
    servers = []

    def serve(directory):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def make_idx_set():
    """The function :func:`write_idx_set`, for tests."""
    return write_idx_set


@pytest.fixture
def dead_mirror():
    """A localhost mirror URL that refuses connections."""
    return dead_url()
