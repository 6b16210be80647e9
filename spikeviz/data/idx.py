"""Read and write the IDX format of MNIST and its relatives (Fashion-MNIST, KMNIST, EMNIST).

An IDX file is a 4-byte magic number, one big-endian uint32 size per dimension, then the
data in C order, big-endian::

    0x00 0x00 <dtype code> <number of dimensions>   (magic number)
    <size of dimension 0> ... <size of dimension n-1> (uint32, big-endian)
    <data>                                            (prod(sizes) items)

Files may be gzipped; the reader detects gzip by its magic bytes (1f 8b), not by the name.
"""

import gzip
import math
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np

from spikeviz.errors import DataError

__all__ = ["read_idx", "write_idx"]

#: The IDX data type codes and the big-endian dtype each one stands for.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_BY_KIND_SIZE = {(dtype.kind, dtype.itemsize): code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = (
    "Fix: delete the file and download it again, or point --data-dir / SPIKEVIZ_DATA at a "
    "directory with valid IDX files (for MNIST: the four standard files)."
)


def read_idx(path):
    """Read an IDX file, gzipped or raw.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is detected from the content (magic bytes 1f 8b), not from the name.

    Returns
    -------
    numpy.ndarray
        Shape ``(d0, d1, ...)`` as written in the header, native byte order, read-only
        (MNIST images: ``(n, 28, 28)`` uint8; labels: ``(n,)`` uint8).

    Raises
    ------
    DataError
        If the file is missing, not IDX, of an unknown dtype code, truncated, has trailing
        bytes, or is a corrupt gzip stream. The message names the file and the fix.
    """
    path = Path(path)
    content = _read_bytes(path)
    dtype, shape, offset = _parse_header(path, content)
    expected = math.prod(shape) * dtype.itemsize
    found = len(content) - offset
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise DataError(
            f"IDX file {path} {what}: the header announces shape {shape} of {dtype.name} "
            f"({expected:,} bytes of data) but {found:,} bytes follow the header. {_FIX}"
        )
    array = np.frombuffer(content, dtype=dtype, offset=offset).reshape(shape)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    array.flags.writeable = False
    return array


def write_idx(path, array, compress=None, *, compresslevel=9):
    """Write an array as an IDX file, atomically.

    The data go to a temporary file in the same directory, which then replaces ``path``
    (``os.replace``): a reader never sees a half-written file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; its directory must exist.
    array : array_like
        Any shape with 1 to 255 dimensions, each below 2**32; dtype uint8, int8, int16,
        int32, float32 or float64 (any byte order; stored big-endian).
    compress : bool, optional
        Gzip the file. Default: when the name ends with ``.gz``.
    compresslevel : int, optional
        Gzip level, 0 to 9. The gzip header's time stamp is 0, so equal arrays give equal
        files.

    Raises
    ------
    DataError
        If the dtype or the shape cannot be stored as IDX.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_BY_KIND_SIZE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        supported = ", ".join(dtype.name for dtype in IDX_DTYPES.values())
        raise DataError(f"cannot write {path}: IDX has no code for dtype {array.dtype}; "
                        f"supported: {supported}. Fix: convert the array with .astype().")
    if not 1 <= array.ndim <= 255 or max(array.shape) >= 2**32:
        raise DataError(f"cannot write {path}: IDX stores 1 to 255 dimensions, each below "
                        f"2**32; got shape {array.shape}. Fix: reshape the array.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.astype(IDX_DTYPES[code], copy=False).tobytes(order="C")
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        content = gzip.compress(content, compresslevel=compresslevel, mtime=0)
    _write_atomically(path, content)


def _read_bytes(path):
    """Return the (decompressed) bytes of ``path``, or raise DataError."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist. {_FIX}") from None
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}. {_FIX}") from exc
    if content[:2] != _GZIP_MAGIC:
        return content
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"IDX file {path} starts like gzip (1f 8b) but is not a valid gzip "
                        f"stream ({exc}); it is corrupt or was cut short. {_FIX}") from exc


def _parse_header(path, content):
    """Return ``(dtype, shape, data offset in bytes)`` from the IDX header, or raise."""
    magic = content[:4]
    if len(magic) < 4 or magic[:2] != b"\0\0":
        raise DataError(
            f"{path} is not an IDX file: expected the magic number 00 00 <dtype code> "
            f"<number of dimensions>, found {magic.hex(' ') or 'an empty file'}. "
            f"(A saved HTML error page looks like this too.) {_FIX}"
        )
    dtype = IDX_DTYPES.get(magic[2])
    if dtype is None:
        codes = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise DataError(f"IDX file {path} has dtype code 0x{magic[2]:02X}; expected one of "
                        f"{codes} (0x08 = uint8). {_FIX}")
    ndim = magic[3]
    if ndim == 0:
        raise DataError(f"IDX file {path} declares 0 dimensions; expected at least 1. {_FIX}")
    offset = 4 + 4 * ndim
    if len(content) < offset:
        raise DataError(f"IDX file {path} has a broken header: {ndim} dimensions need "
                        f"{offset} header bytes, found {len(content)}. {_FIX}")
    shape = struct.unpack(f">{ndim}I", content[4:offset])
    return dtype, shape, offset


def _write_atomically(path, content):
    """Write ``content`` to a temporary file next to ``path``, then rename it to ``path``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 honours the umask, as a plain open() would.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
