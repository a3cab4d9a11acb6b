"""Reading an activation store: :class:`ActivationStore` and :func:`open_store`.

A reader loads and validates the manifest and the epoch log once (:mod:`ibtoolkit.store.format`),
then reads layer blocks on demand with ``preadv`` into one preallocated array, checking each block's
size and CRC-32 against its log line.  It takes no lock, so it can follow a live writer
(:meth:`ActivationStore.refresh`).  Writing goes through :meth:`ActivationStore.create`, which
returns a :class:`~ibtoolkit.store.writer.StoreWriter` (a subclass that adds the commit protocol).
"""
from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path

import numpy as np

from .. import _atomic
from ..codes import unpack_pm1
from .format import (EPOCH_LOG, LOCK, MANIFEST, StoreError, array_sha256, as_epoch, fingerprint, is_int, parse_log,
                     validate_manifest)

__all__ = ["ActivationStore", "open_store"]


class ActivationStore:
    """Per-epoch layer activations of one run; see :mod:`ibtoolkit.store.format` for the on-disk format.

    Open an existing store for reading with :func:`open_store`; create (or resume) one for writing
    with :meth:`ActivationStore.create`.  Epoch numbering: epoch 0 is before any update, epoch k
    after k completed training epochs.
    """

    # ---------------------------------------------------------------- construction
    def __init__(self, directory):
        """Use :func:`open_store` or :meth:`create`; this loads and validates an existing store."""
        self.directory = Path(directory)
        self._inputs: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._mutex = threading.RLock()  # one mutation at a time if several threads share a writer
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
        validate_manifest(m, mpath)
        self._manifest = m
        self._layer_info = {l["name"]: l for l in m["layers"]}
        self._n = m["inputs"]["shape"][0]
        self._dtype = np.dtype(m["dtype"])
        lpath = self.directory / EPOCH_LOG
        try:
            data = lpath.read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"{lpath}: the epoch log is missing") from exc
        self._records, self._log_size = parse_log(data, {l["file"]: l["block"]["bytes"] for l in m["layers"]},
                                                  lpath)
        self._torn = len(data) - self._log_size
        self._index = {r["epoch"]: i for i, r in enumerate(self._records)}
        self._epochs = None
        for lay in m["layers"]:
            path = self.directory / lay["file"]
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise StoreError(f"{path}: layer file is a symlink or not a regular file; refused")

    @classmethod
    def create(cls, directory, *, inputs, labels, layers, binary, model=None, dataset=None, schedule=None,
               dtype="float32", resume=True, fsync=False, run=None):
        """Create a store in ``directory`` (made if needed), or reopen the one there for appending;
        returns a :class:`~ibtoolkit.store.writer.StoreWriter`.

        Parameters
        ----------
        inputs, labels : the analysis set, (N, D) numbers and (N,) integer class labels; stored once.
        layers : list of ``(name, width)`` in depth order.  Names are kept verbatim in the manifest
            and mapped to safe file names ``layer_<i>_<slug>.bin``.
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
            store without one takes the given one.

        Raises :class:`StoreError` at once if another process writes the store (lock) or if the
        directory cannot be written (checked by writing a probe the size of one epoch), so a bad
        target fails before training starts.  Bad arguments raise ``ValueError``.
        """
        from .create import create_store

        return create_store(directory, inputs=inputs, labels=labels, layers=layers, binary=binary, model=model,
                            dataset=dataset, schedule=schedule, dtype=dtype, resume=resume, fsync=fsync, run=run)

    # ---------------------------------------------------------------- what the store holds
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
        """The run status.  ``running`` is derived on read: a manifest that says ``running`` while no
        process holds the writer lock on ``.lock`` (its writer was killed or crashed) reads as
        ``interrupted`` (:mod:`ibtoolkit.store.format`, "Status")."""
        status = self._manifest["status"]
        if status == "running" and not _atomic.lock_held(self.directory / LOCK):
            return "interrupted"
        return status

    @property
    def weight_states(self) -> dict[int, list[str]]:
        """``{epoch: [fingerprint, ...]}`` of the model weights the store was recorded from: the
        fingerprint in each committed epoch's log line first, then those of ``trained`` and
        ``retrained_check`` events (a ``fit`` that ended between recorded epochs; a retraining that
        reached other weights).  Empty for stores recorded without fingerprints.  See
        :mod:`ibtoolkit.fingerprint`."""
        states: dict[int, list[str]] = {}
        for r in self._records:
            if r.get("weights"):
                states.setdefault(r["epoch"], []).append(r["weights"])
        for event in self.events:
            if event.get("weights") and event.get("epoch") is not None:
                found = states.setdefault(int(event["epoch"]), [])
                if event["weights"] not in found:
                    found.append(event["weights"])
        return states

    @property
    def run(self) -> dict | None:
        """Copy of the run metadata (``manifest["run"]``), or None (none given)."""
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
    def fingerprint(self) -> str:
        """:func:`ibtoolkit.store.format.fingerprint` of this store's recorded content."""
        return fingerprint(self.manifest)

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

    # ---------------------------------------------------------------- reading
    def _load_whole(self, key: str) -> np.ndarray:
        e = self._manifest[key]
        arr = self._load_checked(self.directory / e["file"], e["bytes"], e["crc32"], np.dtype(e["dtype"]),
                                 tuple(e["shape"]))
        if array_sha256(arr) != e["sha256"]:
            raise StoreError(f"{self.directory / e['file']}: sha256 differs from the manifest")
        arr.setflags(write=False)
        return arr

    @staticmethod
    def _load_checked(path: Path, size: int, crc: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
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
            return unpack_pm1(raw, lay["width"])
        return raw.astype(np.float32, copy=False)

    def block_checksums(self, layer: str) -> dict[int, int]:
        """CRC-32 of the stored block of ``layer`` at every committed epoch, ``{epoch: crc}``, as the log
        records it (nothing is read).  Epochs that recorded the same array have the same checksum; the
        converse is only probable (2^-32 per pair), so compare the arrays before relying on it."""
        file = self._layer(layer)["file"]
        return {r["epoch"]: int(r["blocks"][file][2]) for r in list(self._records)}

    def read_epoch(self, layer: str, epoch: int) -> np.ndarray:
        """Activations of ``layer`` at one committed ``epoch``, shape (N, d) float32."""
        return self.read(layer, [as_epoch(epoch)])[0]

    def iter_chunks(self, layer: str, chunk: int = 16):
        """Yield ``(epochs, array)`` pairs covering all committed epochs, ``chunk`` epochs at a time."""
        if not is_int(chunk) or chunk < 1:
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
        """Re-read manifest and log (a reader following a live writer)."""
        self._load()

    # ---------------------------------------------------------------- a reader refuses writes
    def _read_only(self) -> StoreError:
        return StoreError(f"{self.directory}: store is open read-only (use ActivationStore.create to write)")

    def append(self, epoch, activations, metrics=None, *, weights=None) -> None:
        """Readers cannot write: :class:`StoreError` (see :meth:`create`)."""
        raise self._read_only()

    def add_event(self, kind: str, message: str, epoch: int | None = None, *, weights=None) -> None:
        """Readers cannot write: :class:`StoreError` (see :meth:`create`)."""
        raise self._read_only()

    def set_status(self, status: str) -> None:
        """Readers cannot write: :class:`StoreError` (see :meth:`create`)."""
        raise self._read_only()

    def close(self) -> None:
        """Nothing to release for a reader (writers release their lock and files)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _mode(self) -> str:
        return "reader"

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.directory)!r}, {self._mode()}, layers={self.layers}, "
                f"epochs={len(self._records)}, status={self.status!r})")


def open_store(directory) -> ActivationStore:
    """Open the store in ``directory`` read-only (no lock).

    The manifest and the epoch log are validated now; each array file's size and CRC-32 are checked
    when it is read.  Raises :class:`StoreError` naming the path on any problem.
    """
    return ActivationStore(directory)
