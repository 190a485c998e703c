"""Reading inputs and writing outputs safely.

Text is decoded as UTF-8 with ``surrogateescape`` so that stray bytes (a cp1252 dash inside a
comment, say) survive a round trip unchanged; outputs are written to a temporary file in the
target directory and renamed over the target, so a failed run never leaves a partial file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

from .errors import PrototxtError

PathLike = Union[str, "os.PathLike[str]"]

BOM = "\ufeff"


def decode_text(data: bytes) -> str:
    """Bytes -> str, losslessly: invalid UTF-8 bytes become lone surrogates."""
    return data.decode("utf-8", "surrogateescape")


def encode_text(text: str) -> bytes:
    """The inverse of :func:`decode_text`."""
    return text.encode("utf-8", "surrogateescape")


def read_error(exc: OSError, path: PathLike) -> PrototxtError:
    """A one-line :class:`PrototxtError` for an OS error met while reading ``path``."""
    name = os.fspath(path)
    if isinstance(exc, IsADirectoryError):
        return PrototxtError("is a directory, not a file", name)
    if isinstance(exc, FileNotFoundError):
        return PrototxtError("no such file", name)
    if isinstance(exc, PermissionError):
        return PrototxtError("permission denied", name)
    return PrototxtError(f"cannot read: {exc.strerror or exc}", name)


def read_bytes(path: PathLike) -> bytes:
    """Read a whole file; an OS error becomes a one-line :class:`PrototxtError`."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise read_error(exc, path) from None


def read_text(path: PathLike) -> str:
    """Read a text file losslessly (see :func:`decode_text`); a BOM is kept in the string."""
    return decode_text(read_bytes(path))


def atomic_write(path: PathLike, data: Union[bytes, str]) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Either the whole new content is there afterwards or the old file is untouched. The new
    file keeps the permissions of the file it replaces.
    """
    if isinstance(data, str):
        data = encode_text(data)
    payload = data
    atomic_write_stream(path, lambda handle: handle.write(payload))


def atomic_write_stream(path: PathLike, produce: Callable[[BinaryIO], object]) -> None:
    """Like :func:`atomic_write`, with the content written by ``produce(handle)`` (for outputs
    too large to build in memory first). If ``produce`` raises, the target is untouched."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else None
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise PrototxtError(f"cannot write: {exc.strerror or exc}", os.fspath(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            produce(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise PrototxtError(f"cannot write: {exc.strerror or exc}", os.fspath(path)) from None
        raise
