"""Writing an activation store: :class:`StoreWriter`, the commit protocol of one epoch.

Commit of one epoch (:meth:`StoreWriter.append`): every layer's array is validated and encoded
first (a bad array leaves the store untouched); each layer's block is then written at the committed
end of its file (``pwrite``), and one line is appended to ``epochs.jsonl`` with each block's offset,
size and CRC-32 and the CRC-32 of the line itself (:func:`ibtoolkit.store.format.record_body`).  An
epoch exists once its log line is complete, so a process killed at any instant leaves either the
whole epoch or none of it visible: bytes past the last committed block are ignored by readers and
cut off when the store is reopened for writing, and a torn last log line is ignored and truncated.
Appending to open files, with no file created per epoch, keeps the cost of a commit constant however
many epochs a run records; the manifest is rewritten (temporary file + ``os.replace``) only on
creation, events, status changes and reopening.

Durability: by default (``fsync=False``) a committed epoch survives the death of the process
(SIGKILL, OOM killer, crash), because finished writes live in the kernel's page cache.  A power cut
or kernel panic may lose the most recent epochs; a block whose data did not reach the disk is then
caught by its size/CRC check when read (``StoreError``), never used.  ``fsync=True`` forces the
layer files, then the log line, to disk before :meth:`StoreWriter.append` returns.

The page cache of the layer files is released as the run goes (:mod:`ibtoolkit.store.cache`).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

import numpy as np

from .. import _atomic
from ..codes import pack_pm1_float32
from .cache import CacheRelease
from .format import (EPOCH_LOG, MANIFEST, STATUSES, StoreError, as_epoch, clean_metrics, now, record_body,
                     weights_text)
from .reader import ActivationStore

__all__ = ["StoreWriter"]


class StoreWriter(ActivationStore):
    """An :class:`ActivationStore` open for appending, holding the store's writer lock.

    Made by :meth:`ActivationStore.create` (:func:`ibtoolkit.store.create.create_store`), never
    directly.  Reading works as for any store, also after :meth:`close`.
    """

    def __init__(self, directory, lock: _atomic.WriterLock, *, fsync: bool = False):
        """Load and validate the store in ``directory``; files are opened by :meth:`open_for_append`."""
        self._lock: _atomic.WriterLock | None = lock
        self._log_fd: int | None = None
        self._data_fds: dict[str, int] = {}  # layer file -> descriptor
        self._fsync = bool(fsync)
        self._cache = CacheRelease()
        super().__init__(directory)

    # ---------------------------------------------------------------- opening
    def open_for_append(self, *, resumed: bool, schedule=None, run=None) -> None:
        """Open the log and layer files, cutting what a killed writer left past the committed epochs.
        On a resumed store, record a ``resumed`` event and the new ``schedule`` and ``run`` if given."""
        try:
            self._open_log()
            self._open_layer_files()
            if resumed:
                if schedule is not None:
                    self._manifest["schedule"] = schedule
                if run is not None:
                    self._manifest["run"] = run
                self._manifest["status"] = "running"
                last = int(self._records[-1]["epoch"]) if self._records else None
                self._event("resumed", f"reopened for writing by pid {os.getpid()} after epoch {last}", last)
                self._write_manifest()
        except BaseException:
            self._close_files()
            raise

    def _open_log(self) -> None:
        lpath = self.directory / EPOCH_LOG
        try:
            self._log_fd = os.open(lpath, os.O_WRONLY | os.O_APPEND)
            if self._torn:
                os.ftruncate(self._log_fd, self._log_size)  # drop the torn last line of a killed writer
            self._clean_strays()
        except OSError as exc:
            raise StoreError(f"{lpath}: cannot open the epoch log for appending: {exc}") from exc

    def _clean_strays(self) -> None:
        """Delete our own leftovers of a killed writer: temporary files of manifest writes."""
        for entry in os.scandir(self.directory):
            if _atomic.TMP_PATTERN.match(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)

    def _open_layer_files(self) -> None:
        """Open every layer file for writing and cut it to its committed blocks (a killed writer may
        have left part of an uncommitted epoch behind them).  A file shorter than its committed
        blocks is damage this writer must not build on: :class:`StoreError`, nothing changed."""
        committed = len(self._records)
        for lay in self._manifest["layers"]:
            path = self.directory / lay["file"]
            try:
                # created only while empty: a missing file with committed epochs is damage, not a fresh start
                fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | (0 if committed else os.O_CREAT), 0o644)
                self._data_fds[lay["file"]] = fd
                size, end = os.fstat(fd).st_size, committed * lay["block"]["bytes"]
                if size > end:
                    os.ftruncate(fd, end)
            except OSError as exc:
                raise StoreError(f"{path}: cannot open the layer file for writing: {exc}") from exc
            if size < end:
                raise StoreError(f"{path}: {size} bytes, but its {committed} committed epochs need {end}: the file "
                                 f"was truncated and the store is damaged (read it with open_store; record into "
                                 f"a new directory)")

    def _close_files(self) -> None:
        """Close the log and layer files; the lock is released separately."""
        fds = list(self._data_fds.values()) + ([self._log_fd] if self._log_fd is not None else [])
        self._data_fds, self._log_fd = {}, None
        for fd in fds:
            os.close(fd)

    # ---------------------------------------------------------------- appending
    def append(self, epoch: int, activations: Mapping[str, np.ndarray], metrics: Mapping[str, float] | None = None,
               *, weights: str | None = None):
        """Atomically commit ``epoch``: one (N, d) array per layer, optional Keras metrics.

        All arrays are validated (every layer present, shape (N, width), real numbers, binary layers
        only ±1) and encoded before anything is written: a ``ValueError`` leaves the store untouched.
        Epochs must increase strictly.  I/O failures raise :class:`StoreError`; the epoch is then not
        committed and the store stays consistent.  ``weights``: the fingerprint of the model's weights
        at this epoch (:mod:`ibtoolkit.fingerprint`), kept in the epoch's log line.
        """
        with self._mutex:
            self._append(epoch, activations, metrics, weights_text(weights))

    def _append(self, epoch, activations, metrics, weights=None) -> None:
        self._check_open()
        epoch = as_epoch(epoch)
        if self._records and epoch <= self._records[-1]["epoch"]:
            raise ValueError(f"epochs must increase strictly: got epoch {epoch} after epoch "
                             f"{self._records[-1]['epoch']} in {self.directory}")
        encoded = self._encode(activations)
        met = clean_metrics(metrics)
        index = len(self._records)
        blocks = {}
        try:
            for lay, block in encoded:
                offset = index * lay["block"]["bytes"]
                _atomic.write_all(self._data_fds[lay["file"]], block, offset)
                blocks[lay["file"]] = [offset, block.nbytes, _atomic.crc32(block)]
            if self._fsync:
                for fd in self._data_fds.values():
                    os.fsync(fd)
            rec = {"epoch": epoch, "metrics": met, "blocks": blocks, "time": round(time.time(), 3)}
            if weights is not None:
                rec["weights"] = weights
            body, crc = record_body(rec)  # serialized once: the line is this record plus its CRC
            self._append_log(body[:-1] + b',"crc32":%d}\n' % crc)
        except OSError as exc:
            self._cut_layer_files(index)  # uncommitted: cut now (a reopen would cut them anyway)
            raise StoreError(f"{self.directory}: could not commit epoch {epoch}: {exc}") from exc
        del rec["time"]
        self._index[epoch] = len(self._records)
        self._records.append(rec)
        self._epochs = None
        self._cache.committed(len(self._records), [(self._data_fds[lay["file"]], lay["block"]["bytes"])
                                                   for lay in self._manifest["layers"]])

    def _cut_layer_files(self, n_blocks: int) -> None:
        """Truncate every layer file to its first ``n_blocks`` blocks (best effort, after a failed write)."""
        for lay in self._manifest["layers"]:
            try:
                os.ftruncate(self._data_fds[lay["file"]], n_blocks * lay["block"]["bytes"])
            except OSError:
                pass  # readers ignore bytes past the committed blocks; the next reopen cuts them

    def _append_log(self, line: bytes) -> None:
        try:
            n = os.write(self._log_fd, line)
            if n != len(line):
                raise OSError(f"short write to {EPOCH_LOG} ({n} of {len(line)} bytes)")
            if self._fsync:
                os.fsync(self._log_fd)
        except OSError:
            os.ftruncate(self._log_fd, self._log_size)  # never leave a partial line behind
            raise
        self._log_size += len(line)

    def _encode(self, activations) -> list[tuple[dict, np.ndarray]]:
        """Validate every layer's array and convert it to its C-contiguous block (packed bits or dtype)."""
        if not isinstance(activations, Mapping):
            raise ValueError(f"activations must be a mapping of layer name -> array, got {type(activations).__name__}")
        unknown = set(activations) - set(self._layer_info)
        missing = [n for n in self.layers if n not in activations]
        if unknown or missing:
            raise ValueError(f"activations must hold exactly the store's layers {self.layers}; "
                             f"missing {missing}, unknown {sorted(map(str, unknown))}")
        out = []
        for lay in self._manifest["layers"]:
            name, width = lay["name"], lay["width"]
            a = np.asarray(activations[name])
            if a.dtype.kind not in "biuf":  # bool, signed, unsigned, float: real numbers only
                raise ValueError(f"layer {name!r}: activations must be real numbers, got dtype {a.dtype}")
            if a.shape != (self._n, width):
                raise ValueError(f"layer {name!r}: expected shape ({self._n}, {width}), got {a.shape}")
            if lay["binary"]:
                block = pack_pm1_float32(a) if a.dtype == np.float32 else None  # test and pack in one pass
                if block is None:  # not float32, or not all ±1: check in the given dtype, then pack
                    ok = (a == 1) | (a == -1)
                    if not ok.all():
                        bad = a[~ok].flat[0]
                        raise ValueError(f"layer {name!r} is binary but holds {int((~ok).sum())} value(s) other "
                                         f"than +1/-1 (e.g. {bad!r})")
                    block = pack_pm1_float32(a.astype(np.float32))  # exact: every value is ±1
            else:
                block = np.ascontiguousarray(a, dtype=self._dtype)
            out.append((lay, block))
        return out

    # ---------------------------------------------------------------- events and status
    def add_event(self, kind: str, message: str, epoch: int | None = None, *, weights: str | None = None) -> None:
        """Record an event (e.g. ``"diverged"``) in the manifest, with a timestamp; ``weights``: the
        fingerprint of the model's weights at ``epoch`` (e.g. a ``fit`` that ended between recorded
        epochs), one of the states :attr:`weight_states` lists."""
        self._check_open()
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"event kind must be a non-empty string, got {kind!r}")
        if epoch is not None:
            epoch = as_epoch(epoch)
        weights = weights_text(weights)
        with self._mutex:
            self._event(kind, str(message), epoch, weights)
            self._write_manifest()

    def _event(self, kind: str, message: str, epoch, weights=None) -> None:
        event = {"kind": kind, "message": message, "epoch": epoch, "time": now()}
        if weights is not None:
            event["weights"] = weights
        self._manifest["events"].append(event)

    def set_status(self, status: str) -> None:
        """Set the run status: one of ``running``, ``complete``, ``diverged``, ``interrupted``."""
        self._check_open()
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._mutex:
            self._manifest["status"] = status
            self._write_manifest()

    def _write_manifest(self) -> None:
        self._manifest["updated"] = now()
        path = self.directory / MANIFEST
        try:
            _atomic.write_atomic(path, json.dumps(self._manifest, indent=1).encode(), fsync=self._fsync)
            if self._fsync:
                _atomic.fsync_dir(self.directory)
        except OSError as exc:
            raise StoreError(f"{path}: could not write the manifest: {exc}") from exc

    def _check_open(self) -> None:
        if self._log_fd is None:
            raise StoreError(f"{self.directory}: store is closed")

    # ---------------------------------------------------------------- closing
    def refresh(self) -> None:
        """A writer holds the current state already: nothing to re-read."""

    def close(self) -> None:
        """Release the lock and the files; idempotent.  Reading still works afterwards."""
        with self._mutex:
            self._close()

    def _close(self) -> None:
        self._close_files()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close; if the block raised while the status is still ``running``, mark it ``interrupted``."""
        with self._mutex:
            try:
                if exc_type is not None and self._log_fd is not None and self.status == "running":
                    self._event("interrupted", f"{exc_type.__name__}: {exc}", self.last_epoch)
                    self._manifest["status"] = "interrupted"
                    self._write_manifest()
            finally:
                self._close()

    @property
    def status(self) -> str:
        """The status this writer set (its own lock makes ``running`` current while it is open)."""
        if self._log_fd is None:  # closed: read as any reader would
            return ActivationStore.status.fget(self)
        return self._manifest["status"]

    def _mode(self) -> str:
        return "writer" if self._log_fd is not None else "reader"
