"""Checkpoints: everything a run needs to continue bit for bit, written atomically.

One ``.npz`` file holds the network (stored weights, per-neuron scales and tracked sums,
thresholds and floors), the ADAM moments, the config, the position in the epoch with the state of
the event generator, the epoch accumulators, the metrics so far and the spikeviz version.  It is
written to a temporary file in the same directory, flushed to disk and renamed over the target,
so a crash or a kill at any moment leaves either the old or the new checkpoint, never half of one.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from spikeviz import __version__
from spikeviz.errors import ConfigError

FORMAT = 1


def write_atomically(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path, arrays, meta):
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-able dict) to ``path`` atomically."""
    meta = dict(meta, format=FORMAT, spikeviz_version=__version__)
    payload = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    write_atomically(path, lambda file: np.savez(file, **payload))


def load_checkpoint(path):
    """(arrays, meta) of a checkpoint, with an error that says what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist; pass a checkpoint .npz written by "
                          "`spikeviz train --out DIR` (DIR/last.npz)")
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ConfigError(f"checkpoint {path} is unreadable or truncated ({error}); use an earlier "
                          "checkpoint from the same run directory") from error
    if "meta" not in arrays:
        raise ConfigError(f"{path} is not a spikeviz checkpoint (no metadata)")
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {path} has format {meta.get('format')}, this spikeviz "
                          f"reads format {FORMAT}")
    return arrays, meta
