"""Data sets: the IDX format, MNIST-style sets and where they come from (directory, cache,
download, bundled subset)."""

from spikeviz.data.idx import read_idx, write_idx
from spikeviz.data.mnist import MNIST, default_cache_dir, load_mnist, resolve_mnist_dir

__all__ = [
    "MNIST", "default_cache_dir", "load_mnist", "read_idx", "resolve_mnist_dir", "write_idx",
]
from spikeviz.data.nmnist import (  # noqa: E402
    NMNIST, NMNIST_DTYPE, EventRecordings, EventWindow, events_to_channels, load_nmnist,
    read_nmnist_file, window,
)
__all__ += ["EventRecordings", "EventWindow", "NMNIST", "NMNIST_DTYPE", "events_to_channels",
            "load_nmnist", "read_nmnist_file", "window"]
# The sensor emulator, imported on first use: it compiles a numba kernel, and importing numba
# (0.3 s) is a cost that loading data does not pay.
_EMULATOR_EXPORTS = ("DEFAULT_PARAMS", "EmulatorParams", "Saccade", "emulate_nmnist",
                     "emulate_recording")
__all__ += list(_EMULATOR_EXPORTS)


def __getattr__(name):
    if name in _EMULATOR_EXPORTS:
        from spikeviz.data import emulator
        return getattr(emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
