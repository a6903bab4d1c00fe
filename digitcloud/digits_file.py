"""The wire contract's batch file: uint8 ``[N, 28, 28]`` digits as numpy's ``.npy`` or ``.npz``.

``write_digits_file`` is the client's side (``contract``, ``replicate``), ``read_digits_file``
``predict.py``'s: a damaged, oversized or mistyped file is an ``InputError``, never a crash.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from digitcloud import photo
from digitcloud.errors import InputError

try:
    from lzma import LZMAError
except ImportError:  # a Python built without liblzma: zipfile cannot open LZMA members either
    LZMAError = ValueError  # type: ignore[misc,assignment]

MAX_BATCH_DIGITS = 250_000  # 196 MB of digits; the contract promises at least 100,000
BATCH_KEY = "digits"  # the array's name inside an .npz


def read_digits_file(path: str | os.PathLike[str], max_digits: int = MAX_BATCH_DIGITS) -> np.ndarray:
    """A batch file of the wire contract: ``.npy``, or ``.npz`` with one array (named ``digits``),
    holding already-normalised uint8 ``[N, 28, 28]`` digits. Never unpickles; the header is checked
    before any data is read, and the data must be there before its buffer is allocated, so a file
    claiming a billion digits (or 250,000 in 100 bytes) costs nothing."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
            f.seek(0)
            if head.startswith(b"\x93NUMPY"):
                return _read_npy(f, os.fstat(f.fileno()).st_size, max_digits)
        if head.startswith(b"PK"):
            return _read_npz(path, max_digits)
    except InputError:
        raise
    except _CORRUPT_ARCHIVE as exc:
        raise InputError(f"corrupt batch file: {type(exc).__name__}: {exc}") from exc
    raise InputError("a batch file must be .npy or .npz (numpy's formats) holding uint8 [N, 28, 28]")


# What numpy's header parser and zipfile raise on damaged input: zlib/lzma/bz2 stream errors,
# unsupported or encrypted members, struct sizes that do not add up.
_CORRUPT_ARCHIVE = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    LZMAError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
)
NPY_VERSIONS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(f: Any, size: int | None, max_digits: int) -> np.ndarray:
    """The array in an .npy stream, in a writable buffer of its own (torch refuses read-only arrays).

    ``size``: the stream's length when it is a plain file (its bytes are there, so the buffer is
    allocated at once and read into); ``None`` for an archive member, whose declared size proves
    nothing, so the buffer grows only as data really arrives.
    """
    version = np.lib.format.read_magic(f)
    read_header = NPY_VERSIONS.get(version)
    if read_header is None:
        raise InputError(f"unsupported .npy version {version[0]}.{version[1]} (1.0 and 2.0 are read)")
    try:
        shape, fortran, dtype = read_header(f)
    except Exception as exc:  # numpy's header parser: ValueError, and tokenize.TokenError from older headers
        raise InputError(f"corrupt .npy header: {type(exc).__name__}: {exc}") from exc
    _check_batch(shape, dtype, max_digits)
    count = int(np.prod(shape))
    if size is not None and size - f.tell() < count:
        raise InputError(f"truncated batch file: {max(0, size - f.tell()):,} of {count:,} bytes")
    if size is not None:
        array = np.empty(count, dtype=np.uint8)
        view, filled = array.data, 0
        while filled < count and (n := f.readinto(view[filled : filled + 2**20])):
            filled += n
    else:
        data = bytearray()
        while len(data) < count and (chunk := f.read(min(2**20, count - len(data)))):
            data += chunk
        array, filled = np.frombuffer(data, dtype=np.uint8), len(data)
    if filled < count:
        raise InputError(f"truncated batch file: {filled:,} of {count:,} bytes")
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _read_npz(path: str | os.PathLike[str], max_digits: int) -> np.ndarray:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(".npy")]
        name = f"{BATCH_KEY}.npy" if f"{BATCH_KEY}.npy" in names else (names[0] if len(names) == 1 else None)
        if name is None:
            raise InputError(f"an .npz batch needs one array, or one named {BATCH_KEY!r}; found {names}")
        info = archive.getinfo(name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # numpy writes only these two; bzip2/LZMA decoders size their state from the header
            raise InputError(
                f"an .npz member must be stored or deflated (as numpy writes it), not method {info.compress_type}"
            )
        # zipfile never inflates a member past its declared file_size (then it checks the CRC)
        if info.file_size > max_digits * photo.SIZE * photo.SIZE + 4096:
            raise InputError(f"batch too large: over {max_digits:,} digits")
        with archive.open(name) as member:
            return _read_npy(member, None, max_digits)


def _check_batch(shape: tuple[int, ...], dtype: np.dtype[Any], max_digits: int) -> None:
    if dtype != np.uint8:
        raise InputError(f"batch digits must be uint8, got {dtype}")
    # type(...) is int: a header may say (True, 28, 28), which == 1 but cannot size an array
    if len(shape) != 3 or tuple(shape[1:]) != (photo.SIZE, photo.SIZE) or type(shape[0]) is not int:
        raise InputError(f"batch must have shape [N, 28, 28], got {list(shape)}")
    if shape[0] < 1:
        raise InputError("batch file holds no digits")
    if shape[0] > max_digits:
        raise InputError(f"batch too large: {shape[0]:,} digits (limit {max_digits:,} per prediction)")


def write_digits_file(digits: np.ndarray, compressed: bool = False) -> bytes:
    """The bytes of a batch file for ``read_digits_file``: ``.npy``, or ``.npz`` when ``compressed``."""
    digits = np.ascontiguousarray(digits, dtype=np.uint8)
    _check_batch(digits.shape, digits.dtype, max(MAX_BATCH_DIGITS, len(digits)))
    buf = io.BytesIO()
    if compressed:
        np.savez_compressed(buf, digits=digits)  # the key is BATCH_KEY
    else:
        np.save(buf, digits, allow_pickle=False)
    return buf.getvalue()
