"""Crash-safe activation store: the per-epoch layer representations of one training run, on disk.

A store is a directory that numpy and json alone can read (no pickle anywhere)::

    run/
      manifest.json          small JSON manifest (schema, model, dataset, run, layers, schedule, status, events)
      epochs.jsonl           append-only log, one JSON line per committed epoch (metrics, block offsets, CRC-32)
      inputs.npy             analysis inputs X, (N, D), stored once (sha256 + CRC-32 in the manifest)
      labels.npy             analysis labels Y, (N,) int64, stored once
      layer_00_<slug>.bin    one append-only file per layer: one fixed-size block per committed epoch
      .lock                  writer lock (fcntl.flock); readers ignore it

Each layer file is a sequence of raw C-order blocks, one per line of ``epochs.jsonl`` and in the
same order: block k starts at byte ``k * block_bytes``, where the manifest's layer entry gives the
block's ``dtype``, ``shape`` and ``bytes`` (the log line repeats ``[offset, bytes, crc32]``).  Binary
(±1) layers are stored bit-packed, ``np.packbits(t > 0, axis=1)`` (bit 1 = +1, bit 0 = -1): blocks of
shape (N, ceil(d / 8)) uint8 that come back as ±1 float32 through
``np.unpackbits(a, axis=1, count=d) * 2 - 1``.  Continuous layers are float32 blocks (or float16 with
``dtype="float16"``) of shape (N, d).  So one layer over all E committed epochs is
``np.fromfile(path, dtype, count=E * N * w).reshape(E, N, w)``.

Commit protocol of one epoch (:meth:`ActivationStore.append`): each layer's block is written at the
committed end of its file (``pwrite``); then one line is appended to ``epochs.jsonl`` with each
block's offset, size and CRC-32 and a CRC-32 of the line itself (of the record without its
``"crc32"`` key as canonical JSON: keys sorted, separators ``,`` and ``:``).  An epoch exists once
its log line is complete.  A process killed at any instant therefore leaves either the whole epoch or none of it
visible: bytes past the last committed block are ignored by readers and cut off when the store is
reopened for writing, and a torn last log line (no trailing newline) is ignored and truncated.
Appending to open files, with no file created per epoch, keeps the commit cheap and constant (about
0.2 ms at 4096 x 29 units, against about 0.6 ms for creating one new file) however many epochs a
run records; the manifest is rewritten (temp file + ``os.replace``) only on creation, events,
status changes and reopening.

Page cache: every 64 committed epochs the writer advises the kernel (``posix_fadvise(DONTNEED)``)
that layer blocks committed more than 40 s ago will not be needed soon; the kernel has written them
back by then and drops them from its cache, so a long run keeps reusing the same cache pages instead
of growing the cache by its whole size.  On this project's virtual machine that growth made every
commit 7x slower once several GB were cached (1.2 instead of 0.18 ms per epoch after about 5000
epochs of 475 kB; flat at 0.17 ms with the advice over 14 000 epochs, ``benchmarks/bench_store.py``).
Reading the store afterwards then reads those blocks from disk.

Durability: by default (``fsync=False``) a committed epoch survives the death of the process
(SIGKILL, OOM killer, crash), because finished writes live in the kernel's page cache.  A power cut
or kernel panic may lose the most recent epochs; a block whose data did not reach the disk is then
caught by its size/CRC check when read (``StoreError``), never used.  ``fsync=True`` forces the
layer files, then the log line, to disk before :meth:`append` returns (slower; see
``benchmarks/bench_store.py``).

Every block listed in the log is checked when read: the file must be long enough and the block's
CRC-32 must match; ``inputs.npy`` and ``labels.npy`` are checked by size, CRC-32, header and sha256.
A mismatch raises :class:`StoreError` naming the file (and the epoch).  Manifests and log lines are
validated on open (schema version, required keys, types, block sizes and offsets, file names that
cannot leave the store directory).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import _atomic
from ._bits import pack_pm1_float32
from .validation import as_labels, as_samples

__all__ = ["StoreError", "ActivationStore", "open_store", "run_metadata", "SCHEMA_VERSION", "FORMAT"]

FORMAT = "ibtoolkit-activation-store"
SCHEMA_VERSION = 2
_CACHE_WINDOW = 64  # epochs: how often the writer releases cached layer blocks (module docstring)
_CACHE_AGE = 40.0   # seconds a committed block stays cached: the kernel writes dirty pages back after 30 s
_CACHE_BYTES = 1 << 30  # ... unless the blocks cached since then exceed this (a very fast writer)
MANIFEST = "manifest.json"
EPOCH_LOG = "epochs.jsonl"
INPUTS = "inputs.npy"
LABELS = "labels.npy"
LOCK = ".lock"
STATUSES = ("running", "complete", "diverged", "interrupted")
DTYPES = ("float32", "float16")

_LAYER_FILE = re.compile(r"^layer_\d{2,}_[A-Za-z0-9_-]{0,64}\.bin$")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SLUG_BAD = re.compile(r"[^A-Za-z0-9_-]+")


class StoreError(ValueError):
    """An invalid, corrupted, locked or incompatible store.  The message names the path."""


# ----------------------------------------------------------------------------------------------
# small pure helpers
# ----------------------------------------------------------------------------------------------

def _slug(name: str) -> str:
    return _SLUG_BAD.sub("_", name).strip("_")[:48]


def layer_file(index: int, name: str) -> str:
    """Safe file name of layer ``index`` called ``name``: ``layer_<index>_<slug>.bin``."""
    return f"layer_{index:02d}_{_slug(name)}.bin"


def block_spec(binary: bool, width: int, n: int, dtype: str) -> dict:
    """The manifest's description of one epoch block of a layer: numpy ``dtype`` string, ``shape``, ``bytes``."""
    dt = np.dtype(np.uint8) if binary else np.dtype(dtype)
    shape = [n, (width + 7) // 8] if binary else [n, width]
    return {"dtype": dt.str, "shape": shape, "bytes": shape[0] * shape[1] * dt.itemsize}


def _name_problem(name) -> str | None:
    """Why ``name`` cannot be a layer name, or None.  Names never become paths (their slugs do), but
    names that look like escaping paths are refused so a hostile manifest cannot smuggle one in."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if any(ord(c) < 32 for c in name):
        return "contains control characters"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "contains a '..' path component that would escape the store directory"
    return None


def _unpack_signs(packed: np.ndarray, width: int) -> np.ndarray:
    """Inverse of the store's packing (``np.packbits(t > 0, axis=1)``, see :mod:`ibtoolkit._bits`) over a
    stack (..., N, ceil(d/8)) -> (..., N, d) float32 of ±1."""
    bits = np.unpackbits(np.ascontiguousarray(packed).reshape(-1)).reshape(packed.shape[:-1] + (-1,))
    out = bits[..., :width].astype(np.float32)
    out *= 2.0
    out -= 1.0
    return out


def _array_sha256(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _json_ready(value, what: str):
    """Check ``value`` survives a JSON round trip; return the round-tripped copy."""
    if value is None:
        return None
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable (dicts, lists, str, numbers): {exc}") from exc


def run_metadata(run) -> dict | None:
    """Validate run metadata (``IBCallback(run=...)``, :meth:`ActivationStore.create`): None or a
    JSON-serialisable dict; returns its JSON round-tripped copy."""
    if run is not None and not isinstance(run, Mapping):
        raise ValueError(f"run must be a dict of run metadata (or None), got {type(run).__name__}")
    return _json_ready(None if run is None else dict(run), "run")


def _clean_metrics(metrics) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a mapping of name -> float, got {type(metrics).__name__}")
    out = {}
    for key, val in metrics.items():
        if not isinstance(key, str):
            raise ValueError(f"metric names must be strings, got {key!r}")
        arr = np.asarray(val)
        if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"metric {key!r} must be a real scalar number, got {val!r}")
        out[key] = float(arr.reshape(()))
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _as_epoch(epoch) -> int:
    if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (int, np.integer)):
        raise ValueError(f"epoch must be an integer, got {epoch!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return int(epoch)


# ----------------------------------------------------------------------------------------------
# manifest and log validation (everything read from disk goes through here)
# ----------------------------------------------------------------------------------------------

def _need(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise StoreError(f"{path}: {msg}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_file_entry(entry, key: str, expected_file: str, path: Path) -> None:
    _need(isinstance(entry, dict), path, f"'{key}' must be an object")
    for k in ("file", "shape", "dtype", "sha256", "bytes", "crc32"):
        _need(k in entry, path, f"'{key}' is missing the key '{k}'")
    _need(entry["file"] == expected_file, path, f"'{key}.file' must be '{expected_file}', got {entry['file']!r}")
    _need(isinstance(entry["shape"], list) and all(_is_int(s) and s >= 0 for s in entry["shape"]), path,
          f"'{key}.shape' must be a list of non-negative integers")
    _need(_is_int(entry["bytes"]) and entry["bytes"] > 0 and _is_int(entry["crc32"]), path,
          f"'{key}.bytes' and '{key}.crc32' must be integers")
    try:
        dt = np.dtype(entry["dtype"])
    except TypeError as exc:
        raise StoreError(f"{path}: '{key}.dtype' {entry['dtype']!r} is not a numpy dtype") from exc
    _need(dt.kind in "biuf", path, f"'{key}.dtype' must be a numeric dtype, got {entry['dtype']!r}")


def _validate_manifest(m, path: Path) -> None:
    """Raise :class:`StoreError` unless ``m`` is a manifest this version can read safely."""
    _need(isinstance(m, dict), path, "manifest must be a JSON object")
    _need(m.get("format") == FORMAT, path, f"not an ibtoolkit store manifest (format {m.get('format')!r})")
    _need("schema_version" in m, path, "manifest is missing the key 'schema_version'")
    version = m["schema_version"]
    _need(_is_int(version) and version == SCHEMA_VERSION, path,
          f"unsupported schema version {version!r}; this ibtoolkit reads version {SCHEMA_VERSION}"
          + (" (version 1 stores, one .npy file per layer and epoch, came from ibtoolkit before its store "
             "became one append-only file per layer; re-record the run)" if version == 1 else ""))
    for key in ("layers", "inputs", "labels", "dtype", "status", "events", "epoch_log", "model", "dataset",
                "schedule"):
        _need(key in m, path, f"manifest is missing the key '{key}'")
    _need(m["dtype"] in DTYPES, path, f"'dtype' must be one of {DTYPES}, got {m['dtype']!r}")
    _need(m["status"] in STATUSES, path, f"'status' must be one of {STATUSES}, got {m['status']!r}")
    _need(m["epoch_log"] == EPOCH_LOG, path, f"'epoch_log' must be '{EPOCH_LOG}', got {m['epoch_log']!r}")
    _need(isinstance(m["events"], list) and all(isinstance(e, dict) for e in m["events"]), path,
          "'events' must be a list of objects")
    _need(m.get("run") is None or isinstance(m["run"], dict), path, "'run' must be an object or null")
    _check_file_entry(m["inputs"], "inputs", INPUTS, path)
    _check_file_entry(m["labels"], "labels", LABELS, path)
    n = m["inputs"]["shape"][0] if m["inputs"]["shape"] else -1
    _need(len(m["inputs"]["shape"]) == 2 and n > 0, path, "'inputs.shape' must be [N, D] with N > 0")
    _need(m["labels"]["shape"] == [n] and np.dtype(m["labels"]["dtype"]) == np.int64, path,
          f"'labels' must be int64 of shape [{n}]")
    layers = m["layers"]
    _need(isinstance(layers, list) and layers, path, "'layers' must be a non-empty list")
    names, files = set(), set()
    for i, lay in enumerate(layers):
        _need(isinstance(lay, dict), path, f"layer {i} must be an object")
        for k in ("name", "file", "width", "binary", "block"):
            _need(k in lay, path, f"layer {i} is missing the key '{k}'")
        problem = _name_problem(lay["name"])
        _need(problem is None, path, f"layer {i} name {lay['name']!r} {problem}")
        f = lay["file"]
        _need(isinstance(f, str) and _LAYER_FILE.match(f) is not None and _SAFE_FILE.match(f) is not None,
              path, f"layer {i} file {f!r} is not a plain 'layer_NN_<slug>.bin' name inside the store "
                    "(path separators, '..' and absolute paths are refused)")
        _need(_is_int(lay["width"]) and lay["width"] > 0, path, f"layer {i} width must be a positive integer")
        _need(isinstance(lay["binary"], bool), path, f"layer {i} 'binary' must be true or false")
        want = block_spec(lay["binary"], lay["width"], n, m["dtype"])
        _need(lay["block"] == want, path, f"layer {i} 'block' must be {want} (from its width, binary flag and the "
                                          f"store dtype), got {lay['block']!r}")
        _need(lay["name"] not in names and f not in files, path, f"layer {i} repeats a name or file")
        names.add(lay["name"])
        files.add(f)


def _record_body(rec: dict) -> tuple[bytes, int]:
    """A log record's canonical JSON (keys sorted, no spaces) without its "crc32" key, and the CRC-32
    of those bytes: the record's checksum.  The writer's line is this body with the CRC added."""
    body = _canonical({k: v for k, v in rec.items() if k != "crc32"}).encode()
    return body, _atomic.crc32(body)


def _record_crc(rec: dict) -> int:
    """CRC-32 of a log record (see :func:`_record_body`)."""
    return _record_body(rec)[1]


def _parse_log(data: bytes, block_bytes: dict[str, int], path: Path) -> tuple[list[dict], int]:
    """Parse ``epochs.jsonl``: return the committed records and the byte length they occupy.

    ``block_bytes`` maps each layer file to its block size; line k must place every layer's block at
    offset ``k * block_bytes``.  A last line without its newline is a torn write and is ignored; any
    other bad line is corruption.
    """
    records: list[dict] = []
    end = data.rfind(b"\n") + 1  # bytes up to and including the last complete line
    last = -1
    for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: line {lineno} is not valid JSON ({exc}); the epoch log is corrupted") from exc
        _need(isinstance(rec, dict) and _is_int(rec.get("crc32")) and rec["crc32"] == _record_crc(rec), path,
              f"line {lineno} fails its CRC-32 check; the epoch log is corrupted")
        ep, met, fl = rec.get("epoch"), rec.get("metrics"), rec.get("blocks")
        _need(_is_int(ep) and ep > last, path, f"line {lineno}: epochs must be integers increasing strictly")
        _need(isinstance(met, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for v in met.values()), path, f"line {lineno}: bad 'metrics'")
        _need(isinstance(fl, dict) and sorted(fl) == sorted(block_bytes), path,
              f"line {lineno}: 'blocks' must list exactly the store's layer files")
        index = len(records)
        for f, v in fl.items():
            size = block_bytes[f]
            _need(isinstance(v, list) and len(v) == 3 and all(_is_int(x) for x in v)
                  and v[:2] == [index * size, size], path,
                  f"line {lineno}: blocks[{f!r}] must be [offset {index * size}, bytes {size}, crc32], got {v!r}")
        last = ep
        records.append({"epoch": ep, "metrics": {k: float(v) for k, v in met.items()}, "blocks": fl})
    return records, end


# ----------------------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------------------

class ActivationStore:
    """Per-epoch layer activations of one run; see the module docstring for the on-disk format.

    Open an existing store for reading with :func:`open_store`; create (or resume) one for writing
    with :meth:`ActivationStore.create`.  Epoch numbering: epoch 0 is before any update, epoch k
    after k completed training epochs.
    """

    # ---------------------------------------------------------------- construction
    def __init__(self, directory, *, _writer: bool = False):
        """Use :func:`open_store` or :meth:`create`; this loads and validates an existing store."""
        self.directory = Path(directory)
        self._writer = _writer
        self._lock: _atomic.WriterLock | None = None
        self._log_fd: int | None = None
        self._log_size = 0
        self._data_fds: dict[str, int] = {}  # layer file -> descriptor, writers only
        self._fsync = False
        self._cache_marks: deque = deque()  # (monotonic time, committed blocks) every _CACHE_WINDOW epochs
        self._released_to = 0  # blocks before this one were advised out of the page cache
        self._inputs: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._mutex = threading.RLock()  # one mutation at a time if several threads share the writer
        self._load()

    def _load(self) -> None:
        mpath = self.directory / MANIFEST
        if not self.directory.is_dir():
            raise StoreError(f"{self.directory}: no such store directory")
        try:
            raw = mpath.read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"{mpath}: no manifest; {self.directory} does not hold an activation store") from exc
        except OSError as exc:
            raise StoreError(f"{mpath}: cannot read the manifest: {exc}") from exc
        try:
            m = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{mpath}: manifest is not valid JSON: {exc}") from exc
        _validate_manifest(m, mpath)
        self._manifest = m
        self._apply_manifest()
        lpath = self.directory / EPOCH_LOG
        try:
            data = lpath.read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"{lpath}: the epoch log is missing") from exc
        self._records, self._log_size = _parse_log(data, {l["file"]: l["block"]["bytes"] for l in m["layers"]},
                                                   lpath)
        self._torn = len(data) - self._log_size
        self._index = {r["epoch"]: i for i, r in enumerate(self._records)}
        self._epochs = None
        for lay in m["layers"]:
            path = self.directory / lay["file"]
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise StoreError(f"{path}: layer file is a symlink or not a regular file; refused")

    def _apply_manifest(self) -> None:
        m = self._manifest
        self._layer_info = {l["name"]: l for l in m["layers"]}
        self._n = m["inputs"]["shape"][0]
        self._dtype = np.dtype(m["dtype"])

    @classmethod
    def create(cls, directory, *, inputs, labels, layers, binary, model=None, dataset=None, schedule=None,
               dtype="float32", resume=True, fsync=False, run=None) -> "ActivationStore":
        """Create a store in ``directory`` (made if needed), or reopen the one there for appending.

        Parameters
        ----------
        inputs, labels : the analysis set, (N, D) numbers and (N,) integer class labels; stored once.
        layers : list of ``(name, width)`` in depth order.  Names are kept verbatim in the manifest
            and mapped to safe directory names ``layer_<i>_<slug>``.
        binary : list of bools, one per layer; binary layers must hold only ±1 and are bit-packed.
        model, dataset, schedule : JSON-friendly descriptions kept in the manifest.
        dtype : ``"float32"`` (default) or ``"float16"`` storage of continuous layers.
        resume : if ``directory`` already holds a store with the same layers and the same inputs and
            labels (by sha256), reopen it and keep its epochs; with ``resume=False``, or on any
            mismatch, raise :class:`StoreError`.
        fsync : force every commit to disk (survives power loss; slower).  Without it a committed
            epoch survives the death of the process but not of the machine.
        run : dict or None, the run metadata (e.g. ``{"run_id", "dataset", "model", "precision",
            "variant", "seed", ...}``; JSON-serialisable), kept as ``manifest["run"]`` and read by
            :func:`ibtoolkit.information_plane` into its rows.  A store holds one run: resuming with
            a *different* run dict raises :class:`StoreError`; ``run=None`` keeps the stored one; a
            store without one (older stores) takes the given one.

        Raises :class:`StoreError` at once if another process writes the store (lock) or if the
        directory cannot be written (checked by writing a probe the size of one epoch), so a bad
        target fails before training starts.  Bad arguments raise ``ValueError``.
        """
        spec = _Spec(inputs, labels, layers, binary, model, dataset, schedule, dtype, run)
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{directory}: cannot create the store directory: {exc}") from exc
        lock = _atomic.WriterLock(directory / LOCK)
        try:
            lock.acquire()
        except _atomic.LockedError as exc:
            if lock.holder_pid() == os.getpid():
                raise StoreError(f"{directory}: this process already has the store open for writing (a store "
                                 f"or IBCallback of an earlier fit that raised?); call its close() method, or "
                                 f"use a different directory") from exc
            raise StoreError(f"{directory}: another process is writing this store ({exc.strerror}, lock file "
                             f"{directory / LOCK}); use a different directory or stop the other run") from exc
        except OSError as exc:
            raise StoreError(f"{directory}: store directory is not writable (or full): {exc}") from exc
        try:
            _probe_writable(directory, spec.epoch_bytes)
            existing = (directory / MANIFEST).exists()
            if existing:
                if not resume:
                    raise StoreError(f"{directory}: already holds an activation store; pass resume=True to "
                                     "continue it or choose a new directory")
                store = cls(directory, _writer=True)
                spec.check_compatible(store, directory)
            else:
                _init_fresh(directory, spec, fsync)
                store = cls(directory, _writer=True)
            store._lock = lock
            store._fsync = bool(fsync)
            store._open_for_append(resumed=existing, spec=spec)
        except BaseException:
            lock.release()
            raise
        return store

    def _open_for_append(self, *, resumed: bool, spec: "_Spec") -> None:
        try:
            self._open_log()
            self._open_layer_files()
            if resumed:
                if spec.schedule is not None:
                    self._manifest["schedule"] = spec.schedule
                if spec.run is not None:
                    self._manifest["run"] = spec.run
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
        """Close the log and layer files (writers); the lock is released separately."""
        fds = list(self._data_fds.values()) + ([self._log_fd] if self._log_fd is not None else [])
        self._data_fds, self._log_fd = {}, None
        for fd in fds:
            os.close(fd)

    # ---------------------------------------------------------------- writing
    def append(self, epoch: int, activations: Mapping[str, np.ndarray], metrics: Mapping[str, float] | None = None):
        """Atomically commit ``epoch``: one (N, d) array per layer, optional Keras metrics.

        All arrays are validated (every layer present, shape (N, width), real numbers, binary layers
        only ±1) and encoded before anything is written: a ``ValueError`` leaves the store untouched.
        Epochs must increase strictly.  I/O failures raise :class:`StoreError`; the epoch is then not
        committed and the store stays consistent.
        """
        with self._mutex:
            self._append(epoch, activations, metrics)

    def _append(self, epoch, activations, metrics) -> None:
        self._check_writer()
        epoch = _as_epoch(epoch)
        if self._records and epoch <= self._records[-1]["epoch"]:
            raise ValueError(f"epochs must increase strictly: got epoch {epoch} after epoch "
                             f"{self._records[-1]['epoch']} in {self.directory}")
        encoded = self._encode(activations)
        met = _clean_metrics(metrics)
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
            body, crc = _record_body(rec)  # serialized once: the line is this record plus its CRC
            self._append_log(body[:-1] + b',"crc32":%d}\n' % crc)
        except OSError as exc:
            self._cut_layer_files(index)  # uncommitted: cut now (a reopen would cut them anyway)
            raise StoreError(f"{self.directory}: could not commit epoch {epoch}: {exc}") from exc
        del rec["time"]
        self._index[epoch] = len(self._records)
        self._records.append(rec)
        self._epochs = None
        if len(self._records) % _CACHE_WINDOW == 0:
            self._release_cache()

    def _release_cache(self) -> None:
        """Advise the kernel that layer blocks committed more than ``_CACHE_AGE`` seconds ago are not
        needed soon (module docstring, "Page cache").  By then the kernel's own write-back has put them
        on disk (it writes dirty pages older than 30 s), so the advice only drops clean pages from the
        cache instead of making this thread start their write-back (about 7 ms per 64 epochs of
        475 kB).  A writer fast enough to cache more than ``_CACHE_BYTES`` in that time releases
        earlier.  The range reaches back past the previous call's end, so pages still dirty then go
        now.  Advice only: errors and platforms without ``posix_fadvise`` are ignored."""
        now, n = time.monotonic(), len(self._records)
        self._cache_marks.append((now, n))
        epoch_bytes = sum(lay["block"]["bytes"] for lay in self._manifest["layers"])
        n_blocks = 0
        while self._cache_marks and (now - self._cache_marks[0][0] >= _CACHE_AGE
                                     or (n - self._cache_marks[0][1]) * epoch_bytes > _CACHE_BYTES):
            n_blocks = self._cache_marks.popleft()[1]
        if not hasattr(os, "posix_fadvise") or n_blocks <= self._released_to:
            return
        first = max(0, self._released_to - 4 * _CACHE_WINDOW)
        self._released_to = n_blocks
        for lay in self._manifest["layers"]:
            size = lay["block"]["bytes"]
            try:
                os.posix_fadvise(self._data_fds[lay["file"]], first * size, (n_blocks - first) * size,
                                 os.POSIX_FADV_DONTNEED)
            except OSError:
                return

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

    def add_event(self, kind: str, message: str, epoch: int | None = None) -> None:
        """Record an event (e.g. ``"diverged"``) in the manifest, with a timestamp."""
        self._check_writer()
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"event kind must be a non-empty string, got {kind!r}")
        if epoch is not None:
            epoch = _as_epoch(epoch)
        with self._mutex:
            self._event(kind, str(message), epoch)
            self._write_manifest()

    def _event(self, kind: str, message: str, epoch) -> None:
        self._manifest["events"].append({"kind": kind, "message": message, "epoch": epoch, "time": _now()})

    def set_status(self, status: str) -> None:
        """Set the run status: one of ``running``, ``complete``, ``diverged``, ``interrupted``."""
        self._check_writer()
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._mutex:
            self._manifest["status"] = status
            self._write_manifest()

    def _write_manifest(self) -> None:
        self._manifest["updated"] = _now()
        path = self.directory / MANIFEST
        try:
            _atomic.write_atomic(path, json.dumps(self._manifest, indent=1).encode(), fsync=self._fsync)
            if self._fsync:
                _atomic.fsync_dir(self.directory)
        except OSError as exc:
            raise StoreError(f"{path}: could not write the manifest: {exc}") from exc

    def _check_writer(self) -> None:
        if not self._writer:
            raise StoreError(f"{self.directory}: store is open read-only (use ActivationStore.create to write)")
        if self._log_fd is None:
            raise StoreError(f"{self.directory}: store is closed")

    def close(self) -> None:
        """Release the lock and the log; idempotent.  Reading still works afterwards."""
        with self._mutex:
            self._close()

    def _close(self) -> None:
        self._close_files()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "ActivationStore":
        return self

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

    # ---------------------------------------------------------------- reading
    @property
    def layers(self) -> list[str]:
        return [l["name"] for l in self._manifest["layers"]]

    @property
    def widths(self) -> dict[str, int]:
        return {l["name"]: l["width"] for l in self._manifest["layers"]}

    @property
    def binary(self) -> dict[str, bool]:
        return {l["name"]: l["binary"] for l in self._manifest["layers"]}

    @property
    def epochs(self) -> np.ndarray:
        cached = self._epochs
        if cached is None or len(cached) != len(self._records):  # length check: safe against a writer thread
            cached = np.array([r["epoch"] for r in list(self._records)], dtype=np.int64)
            self._epochs = cached
        return cached.copy()

    @property
    def last_epoch(self) -> int | None:
        return self._records[-1]["epoch"] if self._records else None

    @property
    def status(self) -> str:
        return self._manifest["status"]

    @property
    def run(self) -> dict | None:
        """Copy of the run metadata (``manifest["run"]``), or None (older stores, or none given)."""
        run = self._manifest.get("run")
        return copy.deepcopy(run) if run is not None else None

    @property
    def events(self) -> list[dict]:
        with self._mutex:
            return copy.deepcopy(self._manifest["events"])

    @property
    def metrics(self) -> dict[int, dict[str, float]]:
        return {r["epoch"]: dict(r["metrics"]) for r in self._records}

    @property
    def manifest(self) -> dict:
        """Deep copy of ``manifest.json``, plus ``"epochs"``: the committed records of ``epochs.jsonl``."""
        with self._mutex:
            m = copy.deepcopy(self._manifest)
            m["epochs"] = copy.deepcopy(self._records)
        return m

    @property
    def inputs(self) -> np.ndarray:
        if self._inputs is None:
            self._inputs = self._load_whole("inputs")
        return self._inputs

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = self._load_whole("labels")
        return self._labels

    def _load_whole(self, key: str) -> np.ndarray:
        e = self._manifest[key]
        arr = self._load_checked(self.directory / e["file"], e["bytes"], e["crc32"], np.dtype(e["dtype"]),
                                 tuple(e["shape"]))
        if _array_sha256(arr) != e["sha256"]:
            raise StoreError(f"{self.directory / e['file']}: sha256 differs from the manifest")
        arr.setflags(write=False)
        return arr

    def _load_checked(self, path: Path, size: int, crc: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"{path}: cannot read a committed file: {exc}") from exc
        if len(data) != size:
            raise StoreError(f"{path}: size {len(data)} bytes, expected {size}: file truncated or replaced")
        if _atomic.crc32(data) != crc:
            raise StoreError(f"{path}: CRC-32 mismatch: file corrupted")
        try:
            arr = _atomic.parse_npy(data, str(path))
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
        if arr.dtype != dtype or arr.shape != shape:
            raise StoreError(f"{path}: holds {arr.dtype} {arr.shape}, expected {dtype} {shape}")
        return arr

    def _layer(self, layer: str) -> dict:
        try:
            return self._layer_info[layer]
        except (KeyError, TypeError):
            raise ValueError(f"unknown layer {layer!r}; the store has {self.layers}") from None

    def _select(self, epochs) -> list[int]:
        if epochs is None:
            return [r["epoch"] for r in self._records]
        eps = np.atleast_1d(np.asarray(epochs))
        if eps.ndim != 1 or (eps.size and not np.issubdtype(eps.dtype, np.integer)):
            raise ValueError(f"epochs must be a 1-D list of integers, got {epochs!r}")
        missing = [int(e) for e in eps if int(e) not in self._index]
        if missing:
            raise ValueError(f"epoch(s) {missing[:5]} are not recorded in {self.directory}; "
                             f"recorded epochs: {self.epochs.tolist()[:10]}{'...' if len(self._records) > 10 else ''}")
        return [int(e) for e in eps]

    def read(self, layer: str, epochs=None) -> np.ndarray:
        """Activations of ``layer`` at ``epochs`` (default: all committed), shape (E, N, d) float32.

        Binary layers come back as ±1.  Every block is size- and CRC-checked (StoreError names the
        file and epoch of a bad one).
        """
        lay = self._layer(layer)
        eps = self._select(epochs)
        block = lay["block"]
        raw = np.empty((len(eps), *block["shape"]), dtype=np.dtype(block["dtype"]))
        path = self.directory / lay["file"]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise StoreError(f"{path}: cannot read a committed layer file: {exc}") from exc
        try:
            size = os.fstat(fd).st_size
            for i, ep in enumerate(eps):
                offset, nbytes, crc = self._records[self._index[ep]]["blocks"][lay["file"]]
                if offset + nbytes > size:
                    raise StoreError(f"{path}: {size} bytes, but epoch {ep} is committed at bytes {offset}.."
                                     f"{offset + nbytes}: file truncated or replaced")
                if os.preadv(fd, [raw[i]], offset) != nbytes:
                    raise StoreError(f"{path}: short read of epoch {ep}: file truncated while reading")
                if _atomic.crc32(raw[i]) != crc:
                    raise StoreError(f"{path}: CRC-32 mismatch in the block of epoch {ep}: file corrupted")
        except OSError as exc:
            raise StoreError(f"{path}: cannot read a committed layer file: {exc}") from exc
        finally:
            os.close(fd)
        if lay["binary"]:
            return _unpack_signs(raw, lay["width"])
        return raw.astype(np.float32, copy=False)

    def read_epoch(self, layer: str, epoch: int) -> np.ndarray:
        """Activations of ``layer`` at one committed ``epoch``, shape (N, d) float32."""
        return self.read(layer, [_as_epoch(epoch)])[0]

    def iter_chunks(self, layer: str, chunk: int = 16):
        """Yield ``(epochs, array)`` pairs covering all committed epochs, ``chunk`` epochs at a time."""
        if not _is_int(chunk) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self._layer(layer)
        eps = self.epochs
        for start in range(0, len(eps), chunk):
            part = eps[start:start + chunk]
            yield part, self.read(layer, part)

    def verify(self) -> None:
        """Check every committed file (inputs, labels, every layer at every epoch); StoreError on the first bad one."""
        self._inputs = self._labels = None
        _ = self.inputs, self.labels
        for layer in self.layers:
            for _part in self.iter_chunks(layer, 64):
                pass

    def refresh(self) -> None:
        """Re-read manifest and log (a reader following a live writer); writers need not call this."""
        if self._writer:
            return
        self._load()

    def __repr__(self) -> str:
        mode = "writer" if self._log_fd is not None else "reader"
        return (f"ActivationStore({str(self.directory)!r}, {mode}, layers={self.layers}, "
                f"epochs={len(self._records)}, status={self.status!r})")


def open_store(directory) -> ActivationStore:
    """Open the store in ``directory`` read-only (no lock).

    The manifest and the epoch log are validated now; each array file's size and CRC-32 are checked
    when it is read.  Raises :class:`StoreError` naming the path on any problem.
    """
    return ActivationStore(directory)


# ----------------------------------------------------------------------------------------------
# creation helpers
# ----------------------------------------------------------------------------------------------

class _Spec:
    """Validated arguments of :meth:`ActivationStore.create`."""

    def __init__(self, inputs, labels, layers, binary, model, dataset, schedule, dtype, run=None):
        self.inputs = np.ascontiguousarray(as_samples(inputs, "inputs"))
        self.labels = np.ascontiguousarray(as_labels(labels, n=self.inputs.shape[0], name="labels"))
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.dtype = dtype
        layers = list(layers)
        binary = list(binary)
        if not layers:
            raise ValueError("layers must list at least one (name, width) pair")
        if len(binary) != len(layers):
            raise ValueError(f"binary must have one flag per layer: {len(binary)} flags for {len(layers)} layers")
        self.layers = []
        seen: set[str] = set()
        for i, (item, flag) in enumerate(zip(layers, binary)):
            try:
                name, width = item
            except (TypeError, ValueError) as exc:
                raise ValueError(f"layers[{i}] must be a (name, width) pair, got {item!r}") from exc
            problem = _name_problem(name)
            if problem is not None:
                raise ValueError(f"layers[{i}] name {name!r} {problem}")
            if name in seen:
                raise ValueError(f"layer name {name!r} appears twice")
            seen.add(name)
            if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or width < 1:
                raise ValueError(f"layer {name!r}: width must be a positive integer, got {width!r}")
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"binary[{i}] must be True or False, got {flag!r}")
            self.layers.append({"name": name, "file": layer_file(i, name), "width": int(width),
                                "binary": bool(flag), "storage": "packbits" if flag else dtype,
                                "block": block_spec(bool(flag), int(width), self.inputs.shape[0], dtype)})
        self.model = _json_ready(model, "model")
        self.dataset = _json_ready(dataset, "dataset")
        self.schedule = _json_ready(schedule, "schedule")
        self.run = run_metadata(run)
        self.epoch_bytes = sum(l["block"]["bytes"] for l in self.layers)

    def check_compatible(self, store: ActivationStore, directory: Path) -> None:
        old = [(l["name"], l["width"], l["binary"]) for l in store._manifest["layers"]]
        new = [(l["name"], l["width"], l["binary"]) for l in self.layers]
        if old != new:
            raise StoreError(f"{directory}: holds a store with layers (name, width, binary) {old}, "
                             f"not {new}; use a new directory")
        if store._manifest["dtype"] != self.dtype:
            raise StoreError(f"{directory}: holds a store with dtype {store._manifest['dtype']}, not {self.dtype}")
        old_run = store._manifest.get("run")
        if self.run is not None and old_run is not None and _canonical(old_run) != _canonical(self.run):
            raise StoreError(f"{directory}: holds the run {_brief(old_run)}, not {_brief(self.run)}; a store "
                             f"records one run: use a new directory")
        for key, arr in (("inputs", self.inputs), ("labels", self.labels)):
            entry = store._manifest[key]
            if entry["sha256"] != _array_sha256(arr):
                raise StoreError(f"{directory}: holds a store recorded on different {key} (sha256 differs); "
                                 "use a new directory")


def _brief(run: dict) -> str:
    """A run dict for an error message: its run_id if it has one, else its JSON (shortened)."""
    if isinstance(run, dict) and run.get("run_id") is not None:
        return repr(run["run_id"])
    text = _canonical(run)
    return text if len(text) <= 120 else text[:117] + "..."


def _probe_writable(directory: Path, nbytes: int) -> None:
    """Write (and delete) a probe the size of one epoch, so a read-only or full target fails now."""
    probe = directory / f".probe.tmp-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _atomic.write_all(fd, bytes(min(nbytes, 64 << 20)))
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise StoreError(f"{directory}: store directory is not writable (or full): {exc}") from exc


_OWN = re.compile(r"^(manifest\.json|epochs\.jsonl|inputs\.npy|labels\.npy|\.lock|layer_\d{2,}_[A-Za-z0-9_-]*\.bin)$")


def _init_fresh(directory: Path, spec: _Spec, fsync: bool) -> None:
    """Lay out a new store; the manifest is written last, so a store exists only once it is complete."""
    foreign = [e.name for e in os.scandir(directory)
               if not (_OWN.match(e.name) or _atomic.TMP_PATTERN.match(e.name))]
    if foreign:
        raise StoreError(f"{directory}: is not empty and holds no store (found {sorted(foreign)[:5]}); "
                         "choose an empty or new directory")
    try:
        for e in os.scandir(directory):  # leftovers of a creation that was killed before its manifest
            if (_OWN.match(e.name) and e.name.startswith("layer_")) or _atomic.TMP_PATTERN.match(e.name):
                os.unlink(e.path)
        entries = {}
        for key, fname, arr in (("inputs", INPUTS, spec.inputs), ("labels", LABELS, spec.labels)):
            data = _atomic.npy_bytes(arr)
            _atomic.write_atomic(directory / fname, data, fsync=fsync)
            entries[key] = {"file": fname, "shape": list(arr.shape), "dtype": arr.dtype.str,
                            "sha256": _array_sha256(arr), "bytes": len(data), "crc32": _atomic.crc32(data)}
        for name in [lay["file"] for lay in spec.layers] + [EPOCH_LOG]:
            _atomic.write_atomic(directory / name, b"", fsync=fsync)
        manifest = {
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "created": _now(), "updated": _now(),
            "model": spec.model, "dataset": spec.dataset, "run": spec.run, "schedule": spec.schedule,
            "dtype": spec.dtype,
            "n_samples": int(spec.inputs.shape[0]),
            "layers": spec.layers, "inputs": entries["inputs"], "labels": entries["labels"],
            "epoch_log": EPOCH_LOG,
            "epoch_blocks": "block k of each layer file (offset k * block.bytes) belongs to line k of epochs.jsonl",
            "durability": {"fsync": bool(fsync)}, "status": "running", "events": [],
        }
        _atomic.write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1).encode(), fsync=fsync)
        if fsync:
            _atomic.fsync_dir(directory)
    except OSError as exc:
        raise StoreError(f"{directory}: could not create the store: {exc}") from exc
