"""Private file-system helpers of the activation store: atomic writes, ``.npy`` bytes, a writer lock.

Atomicity of whole files rests on one POSIX guarantee: ``rename``/``os.replace`` within one
directory is atomic, so a reader sees either the old file or the complete new one, never a prefix.
:func:`write_atomic` writes under a temporary name (``.<name>.tmp-<pid>``) in the final directory
and renames (the store's manifest, inputs and labels).  The store's layer files are append-only
instead: :func:`write_all` with an offset writes a block past the committed end, and the epoch log
line that follows is what commits it (see :mod:`ibtoolkit.store`).

Durability is a separate choice (``fsync``): without it a completed write lives in the kernel's
page cache, which survives the death of the process (SIGKILL, OOM kill, Python crash) but not a
power cut or kernel panic; with it the data, then the rename (via an ``fsync`` of the directory),
are forced to disk before the call returns.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import threading
import zlib
from pathlib import Path

import numpy as np

try:  # same polynomial and values as zlib.crc32, vectorised
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # pragma: no cover - zlib-ng is a dependency; plain zlib gives the same values
    _crc32 = zlib.crc32

__all__ = ["TMP_PATTERN", "tmp_name", "write_all", "write_atomic", "fsync_dir", "npy_bytes", "parse_npy", "crc32",
           "WriterLock", "LockedError"]

#: Names of temporary files this module creates (and that a writer may delete on reopen).
TMP_PATTERN = re.compile(r"^\..+\.tmp-\d+$")


def tmp_name(path: Path) -> Path:
    """Temporary sibling of ``path`` (same directory, so the final rename is atomic); unique per process and thread."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{threading.get_ident() % 100000:05d}")


def crc32(data) -> int:
    """CRC-32 (zlib polynomial) of ``data`` (any contiguous buffer) as an unsigned int: the value
    ``zlib.crc32`` returns, computed by zlib-ng's SIMD code when installed (a dependency: the same
    values, much faster than the system zlib on large blocks), else by zlib."""
    return _crc32(data) & 0xFFFFFFFF


def write_all(fd: int, data, offset: int | None = None) -> None:
    """Write every byte of ``data`` (any buffer) to ``fd``: at the file position, or with ``pwrite`` at ``offset``."""
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


def write_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same directory, then ``os.replace``.

    On any error the temporary file is removed and the error propagates; ``path`` is untouched.
    With ``fsync`` the file's data reach the disk before the rename (call :func:`fsync_dir` after
    the rename to make the new name itself durable).
    """
    tmp = tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def fsync_dir(directory: Path) -> None:
    """Force the directory entry changes (renames, creations) of ``directory`` to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def npy_bytes(arr: np.ndarray) -> bytes:
    """The exact bytes ``np.save`` would write for ``arr`` (format 1.0 header + C-order data)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def parse_npy(data: bytes, what: str) -> np.ndarray:
    """Parse ``.npy`` bytes without pickle; ``ValueError`` naming ``what`` if they are not a plain array."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file's name
        raise ValueError(f"{what} is not a readable .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{what} is not a single .npy array")
    return arr


class LockedError(OSError):
    """Another process holds the writer lock."""


def lock_held(path: Path) -> bool:
    """True when some process (this one included) holds the ``flock`` of a :class:`WriterLock` on ``path``:
    a shared non-blocking lock attempt on a new descriptor fails.  False when the file is missing or the
    lock is free (its writer released it or died: the kernel drops a dead process's locks)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class WriterLock:
    """Exclusive, non-blocking ``fcntl.flock`` on a lock file; released by :meth:`release` or process death.

    The holder writes its PID into the file so that a refused writer can say who holds the lock.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockedError(exc.errno, f"locked by another process{self._holder()}") from exc
            raise
        try:
            os.ftruncate(fd, 0)
            write_all(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def holder_pid(self) -> int | None:
        """PID written by the current holder, or None when unknown."""
        try:
            pid = self.path.read_text().strip()
        except OSError:
            return None
        return int(pid) if pid.isdigit() else None

    def _holder(self) -> str:
        pid = self.holder_pid()
        return "" if pid is None else f" (pid {pid})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
