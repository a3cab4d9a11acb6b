"""Creating (or resuming) an activation store: argument validation, layout, lock, compatibility.

:func:`create_store` (``ActivationStore.create``) validates every argument first (``ValueError``),
takes the directory's writer lock, proves the directory writable with a probe the size of one
epoch, then either lays out a new store (the manifest last, so a store exists only once complete)
or checks that the store already there records the same layers, dtype, run and analysis set
(sha256 of inputs and labels) before reopening it for appending.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import _atomic
from ..validation import as_labels, as_samples
from .format import (DTYPES, EPOCH_LOG, FORMAT, INPUTS, LABELS, LOCK, MANIFEST, OWN_FILE, SCHEMA_VERSION,
                     StoreError, array_sha256, block_spec, canonical_json, json_ready, layer_file, name_problem, now,
                     run_metadata)
from .writer import StoreWriter

__all__ = ["create_store"]


class _Spec:
    """Validated arguments of :func:`create_store`."""

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
            problem = name_problem(name)
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
        self.model = json_ready(model, "model")
        self.dataset = json_ready(dataset, "dataset")
        self.schedule = json_ready(schedule, "schedule")
        self.run = run_metadata(run)
        self.epoch_bytes = sum(l["block"]["bytes"] for l in self.layers)

    def check_compatible(self, manifest: dict, directory: Path) -> None:
        """Raise :class:`StoreError` unless the store of ``manifest`` records what this spec describes."""
        old = [(l["name"], l["width"], l["binary"]) for l in manifest["layers"]]
        new = [(l["name"], l["width"], l["binary"]) for l in self.layers]
        if old != new:
            raise StoreError(f"{directory}: holds a store with layers (name, width, binary) {old}, "
                             f"not {new}; use a new directory")
        if manifest["dtype"] != self.dtype:
            raise StoreError(f"{directory}: holds a store with dtype {manifest['dtype']}, not {self.dtype}")
        old_run = manifest.get("run")
        if self.run is not None and old_run is not None and canonical_json(old_run) != canonical_json(self.run):
            raise StoreError(f"{directory}: holds the run {_brief(old_run)}, not {_brief(self.run)}; a store "
                             f"records one run: use a new directory")
        for key, arr in (("inputs", self.inputs), ("labels", self.labels)):
            if manifest[key]["sha256"] != array_sha256(arr):
                raise StoreError(f"{directory}: holds a store recorded on different {key} (sha256 differs); "
                                 "use a new directory")


def _brief(run: dict) -> str:
    """A run dict for an error message: its run_id if it has one, else its JSON (shortened)."""
    if isinstance(run, dict) and run.get("run_id") is not None:
        return repr(run["run_id"])
    text = canonical_json(run)
    return text if len(text) <= 120 else text[:117] + "..."


def create_store(directory, *, inputs, labels, layers, binary, model=None, dataset=None, schedule=None,
                 dtype="float32", resume=True, fsync=False, run=None) -> StoreWriter:
    """Create a store in ``directory``, or reopen the one there for appending; parameters and errors
    are those of :meth:`ibtoolkit.store.ActivationStore.create`."""
    spec = _Spec(inputs, labels, layers, binary, model, dataset, schedule, dtype, run)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{directory}: cannot create the store directory: {exc}") from exc
    lock = _acquire(directory)
    try:
        _probe_writable(directory, spec.epoch_bytes)
        existing = (directory / MANIFEST).exists()
        if existing:
            if not resume:
                raise StoreError(f"{directory}: already holds an activation store; pass resume=True to "
                                 "continue it or choose a new directory")
            store = StoreWriter(directory, lock, fsync=fsync)
            spec.check_compatible(store.manifest, directory)
        else:
            _init_fresh(directory, spec, fsync)
            store = StoreWriter(directory, lock, fsync=fsync)
        store.open_for_append(resumed=existing, schedule=spec.schedule, run=spec.run)
    except BaseException:
        lock.release()
        raise
    return store


def _acquire(directory: Path) -> _atomic.WriterLock:
    """The directory's writer lock, or :class:`StoreError` saying who holds it."""
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
    return lock


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


def _init_fresh(directory: Path, spec: _Spec, fsync: bool) -> None:
    """Lay out a new store; the manifest is written last, so a store exists only once it is complete."""
    foreign = [e.name for e in os.scandir(directory)
               if not (OWN_FILE.match(e.name) or _atomic.TMP_PATTERN.match(e.name))]
    if foreign:
        raise StoreError(f"{directory}: is not empty and holds no store (found {sorted(foreign)[:5]}); "
                         "choose an empty or new directory")
    try:
        for e in os.scandir(directory):  # leftovers of a creation that was killed before its manifest
            if (OWN_FILE.match(e.name) and e.name.startswith("layer_")) or _atomic.TMP_PATTERN.match(e.name):
                os.unlink(e.path)
        entries = {}
        for key, fname, arr in (("inputs", INPUTS, spec.inputs), ("labels", LABELS, spec.labels)):
            data = _atomic.npy_bytes(arr)
            _atomic.write_atomic(directory / fname, data, fsync=fsync)
            entries[key] = {"file": fname, "shape": list(arr.shape), "dtype": arr.dtype.str,
                            "sha256": array_sha256(arr), "bytes": len(data), "crc32": _atomic.crc32(data)}
        for name in [lay["file"] for lay in spec.layers] + [EPOCH_LOG]:
            _atomic.write_atomic(directory / name, b"", fsync=fsync)
        manifest = {
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "created": now(), "updated": now(),
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
