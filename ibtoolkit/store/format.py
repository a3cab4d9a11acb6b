"""The activation store's on-disk format: names, schema, validation of what is read, log records.

Pure functions only (no file handles): the reader validates with them, the writer encodes with them.

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

A log line is the record ``{"epoch", "metrics", "blocks", "time", "crc32"}`` where ``crc32`` is the
CRC-32 of the record without its ``"crc32"`` key as canonical JSON (:func:`canonical_json`: keys
sorted, separators ``,`` and ``:``).  An epoch exists once its log line is complete; a last line
without its newline is a torn write and is ignored.  A line may also carry ``"weights"``, the
fingerprint of the model's weights at that epoch (:mod:`ibtoolkit.fingerprint`, e.g.
``"crc32:e1ca97f3/294"``); events ``trained`` and ``retrained_check`` carry one for a state between
recorded epochs (:attr:`~ibtoolkit.store.ActivationStore.weight_states`).

Status: the manifest's ``status`` is ``running`` while a writer has the store open, then
``complete``, ``diverged`` or ``interrupted``.  A writer that dies (SIGKILL, crash, power loss)
cannot update it, so ``running`` is current only while some process holds the ``flock`` on
``.lock`` (the kernel drops the lock of a dead process).  The reader derives this
(:attr:`~ibtoolkit.store.ActivationStore.status`): a ``running`` manifest without a lock holder
reads as ``interrupted``.  A numpy-only reader does the same: ``fcntl.flock(fd, LOCK_SH | LOCK_NB)``
on ``.lock`` succeeding (or ``.lock`` missing) means no writer is alive.

Everything read from disk is validated here before use: the manifest (:func:`validate_manifest`:
schema version, required keys, types, block sizes, file names that cannot leave the store
directory) and every log line (:func:`parse_log`: CRC, strictly increasing epochs, block offsets).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import _atomic

__all__ = ["StoreError", "FORMAT", "SCHEMA_VERSION", "MANIFEST", "EPOCH_LOG", "INPUTS", "LABELS", "LOCK",
           "STATUSES", "DTYPES", "layer_file", "block_spec", "run_metadata", "canonical_json", "fingerprint",
           "validate_manifest", "parse_log", "record_body"]

FORMAT = "ibtoolkit-activation-store"
SCHEMA_VERSION = 2
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
#: Every file name a store may hold (besides the temporary files of atomic writes).
OWN_FILE = re.compile(r"^(manifest\.json|epochs\.jsonl|inputs\.npy|labels\.npy|\.lock|layer_\d{2,}_[A-Za-z0-9_-]*\.bin)$")


class StoreError(ValueError):
    """An invalid, corrupted, locked or incompatible store.  The message names the path."""


# ----------------------------------------------------------------------------------------------
# names, blocks and values
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


def name_problem(name) -> str | None:
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


def array_sha256(arr: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and C-order bytes (the manifest's ``sha256`` of inputs and labels)."""
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


def canonical_json(obj) -> str:
    """Canonical JSON of ``obj``: keys sorted, no spaces (separators ``,`` and ``:``), so equal
    values give equal text (used for checksums, comparisons and digests)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def json_ready(value, what: str):
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
    return json_ready(None if run is None else dict(run), "run")


def clean_metrics(metrics) -> dict[str, float]:
    """Validate per-epoch metrics: a mapping of str -> real scalar; returns them as floats."""
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


def now() -> str:
    """Local time stamp of manifests and events, ``YYYY-mm-ddTHH:MM:SS+zzzz``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def weights_text(weights) -> str | None:
    """Check a weight fingerprint (:mod:`ibtoolkit.fingerprint`) given to a commit or an event."""
    if weights is not None and (not isinstance(weights, str) or not weights or len(weights) > 200):
        raise ValueError(f"weights must be a fingerprint string (ibtoolkit.fingerprint), got {weights!r}")
    return weights


def as_epoch(epoch) -> int:
    """Validate an epoch number: an integer >= 0."""
    if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (int, np.integer)):
        raise ValueError(f"epoch must be an integer, got {epoch!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return int(epoch)


def is_int(v) -> bool:
    """A JSON integer (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool)


def fingerprint(manifest: Mapping) -> str:
    """Identifies the recorded content of a store: sha1 of its committed epochs, creation time, run
    metadata and the entries (sha256, CRC-32) of its inputs and labels.  ``manifest`` is
    :attr:`ActivationStore.manifest` (the manifest plus its ``"epochs"`` records).  Results computed
    from a store with another fingerprint are stale."""
    key = {"epochs": [int(r["epoch"]) for r in manifest.get("epochs", [])], "created": manifest.get("created"),
           "run": manifest.get("run"), "inputs": manifest.get("inputs"), "labels": manifest.get("labels")}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# manifest and log validation (everything read from disk goes through here)
# ----------------------------------------------------------------------------------------------

def _need(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise StoreError(f"{path}: {msg}")


def _check_file_entry(entry, key: str, expected_file: str, path: Path) -> None:
    _need(isinstance(entry, dict), path, f"'{key}' must be an object")
    for k in ("file", "shape", "dtype", "sha256", "bytes", "crc32"):
        _need(k in entry, path, f"'{key}' is missing the key '{k}'")
    _need(entry["file"] == expected_file, path, f"'{key}.file' must be '{expected_file}', got {entry['file']!r}")
    _need(isinstance(entry["shape"], list) and all(is_int(s) and s >= 0 for s in entry["shape"]), path,
          f"'{key}.shape' must be a list of non-negative integers")
    _need(is_int(entry["bytes"]) and entry["bytes"] > 0 and is_int(entry["crc32"]), path,
          f"'{key}.bytes' and '{key}.crc32' must be integers")
    try:
        dt = np.dtype(entry["dtype"])
    except TypeError as exc:
        raise StoreError(f"{path}: '{key}.dtype' {entry['dtype']!r} is not a numpy dtype") from exc
    _need(dt.kind in "biuf", path, f"'{key}.dtype' must be a numeric dtype, got {entry['dtype']!r}")


def validate_manifest(m, path: Path) -> None:
    """Raise :class:`StoreError` unless ``m`` is a manifest this version can read safely."""
    _need(isinstance(m, dict), path, "manifest must be a JSON object")
    _need(m.get("format") == FORMAT, path, f"not an ibtoolkit store manifest (format {m.get('format')!r})")
    _need("schema_version" in m, path, "manifest is missing the key 'schema_version'")
    version = m["schema_version"]
    _need(is_int(version) and version == SCHEMA_VERSION, path,
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
        problem = name_problem(lay["name"])
        _need(problem is None, path, f"layer {i} name {lay['name']!r} {problem}")
        f = lay["file"]
        _need(isinstance(f, str) and _LAYER_FILE.match(f) is not None and _SAFE_FILE.match(f) is not None,
              path, f"layer {i} file {f!r} is not a plain 'layer_NN_<slug>.bin' name inside the store "
                    "(path separators, '..' and absolute paths are refused)")
        _need(is_int(lay["width"]) and lay["width"] > 0, path, f"layer {i} width must be a positive integer")
        _need(isinstance(lay["binary"], bool), path, f"layer {i} 'binary' must be true or false")
        want = block_spec(lay["binary"], lay["width"], n, m["dtype"])
        _need(lay["block"] == want, path, f"layer {i} 'block' must be {want} (from its width, binary flag and the "
                                          f"store dtype), got {lay['block']!r}")
        _need(lay["name"] not in names and f not in files, path, f"layer {i} repeats a name or file")
        names.add(lay["name"])
        files.add(f)


def record_body(rec: dict) -> tuple[bytes, int]:
    """A log record's canonical JSON without its "crc32" key, and the CRC-32 of those bytes: the
    record's checksum.  The writer's line is this body with the CRC added."""
    body = canonical_json({k: v for k, v in rec.items() if k != "crc32"}).encode()
    return body, _atomic.crc32(body)


def parse_log(data: bytes, block_bytes: dict[str, int], path: Path) -> tuple[list[dict], int]:
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
        _need(isinstance(rec, dict) and is_int(rec.get("crc32")) and rec["crc32"] == record_body(rec)[1], path,
              f"line {lineno} fails its CRC-32 check; the epoch log is corrupted")
        ep, met, fl = rec.get("epoch"), rec.get("metrics"), rec.get("blocks")
        _need(is_int(ep) and ep > last, path, f"line {lineno}: epochs must be integers increasing strictly")
        _need(isinstance(met, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for v in met.values()), path, f"line {lineno}: bad 'metrics'")
        _need(isinstance(fl, dict) and sorted(fl) == sorted(block_bytes), path,
              f"line {lineno}: 'blocks' must list exactly the store's layer files")
        index = len(records)
        for f, v in fl.items():
            size = block_bytes[f]
            _need(isinstance(v, list) and len(v) == 3 and all(is_int(x) for x in v)
                  and v[:2] == [index * size, size], path,
                  f"line {lineno}: blocks[{f!r}] must be [offset {index * size}, bytes {size}, crc32], got {v!r}")
        weights = rec.get("weights")
        _need(weights is None or isinstance(weights, str), path, f"line {lineno}: 'weights' must be a string")
        last = ep
        records.append({"epoch": ep, "metrics": {k: float(v) for k, v in met.items()}, "blocks": fl})
        if weights is not None:
            records[-1]["weights"] = weights
    return records, end
