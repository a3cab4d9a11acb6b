"""The information-plane table: every estimator on every recorded layer × epoch of one store.

For each recorded layer ``T_l`` and epoch ``e`` the plane holds the two coordinates of
Shwartz-Ziv & Tishby (2017), "Opening the black box of deep neural networks via information",

.. math::

    I(X;T_l^{(e)}) \\quad\\text{and}\\quad I(T_l^{(e)};Y) \\quad\\text{in bits},

beside the ceilings of both axes: ``ixt_ceiling`` :math:`= \\log_2 |\\{x_i\\}|` (the number of
distinct analysis inputs; a deterministic network has :math:`I(X;T) = H(T) \\le \\log_2 N`) and
``h_y`` :math:`= H(Y) = -\\sum_c p_c \\log_2 p_c` (since :math:`I(T;Y) \\le H(Y)`).

Estimation reads the :class:`~ibtoolkit.store.ActivationStore`, never the model, so every
estimator sees the same activations.  Fit, then estimate: before any estimate of a layer, every
estimator is fitted (:meth:`ibtoolkit.Estimator.fit`) in the calling process on that layer of this
run: the inputs, the labels and, when it needs them (binning with ``value_range="data"``), the
layer's activations at every valid recorded epoch, streamed one chunk at a time (epochs marked
invalid are left out, and the fit does not depend on the ``epochs`` selected for estimation).
The fitted values (:meth:`~ibtoolkit.Estimator.fitted_params`, e.g. ``bin_range``) are written
into every row of that layer and travel with the tasks to parallel workers, which restore them
(:meth:`~ibtoolkit.Estimator.set_fitted`).  A failed fit makes every row of that (estimator,
layer) ``failed`` with the fit's error.  The work is cut into (layer, chunk of epochs) tasks; a task
reads only its chunk, so memory stays at one chunk of one layer per worker (never all layers ×
epochs).  With ``n_jobs != 1`` the tasks run on :class:`ibtoolkit.parallel.Engine` (joblib: loky
processes by default, or whatever backend the caller activated with ``joblib.parallel_config``,
e.g. Dask); each task carries only
the store directory, the layer, its epochs and plain estimator specs, and every worker opens the
store itself, builds one estimator instance per estimator (reused for all its tasks of that call,
so per-instance caches of the inputs pay off) and limits TensorFlow and BLAS to one thread.
The serial path runs the very same per-epoch code, so serial and parallel tables are identical.
An estimator that declares :attr:`~ibtoolkit.Estimator.deterministic` is run once per distinct
array of a layer (per process): an epoch that recorded exactly the array of an earlier epoch (a
BNN whose signs stopped flipping; candidates from the store's block checksums, confirmed element by
element) reuses that estimate, which is the one a new call would return.

One tidy row per (estimator, layer, epoch); the columns are listed in :data:`BASE_COLUMNS` (then
the estimators' extras, then the Keras metrics of the epoch, then ``status`` and ``error``).
A failing estimate never stops the table: it becomes a row with ``status="failed"`` and the
exception in ``error``; an estimator that refuses a layer by its declaration (``exact`` on a layer
declared continuous, :meth:`ibtoolkit.Estimator.refusal`) is asked once per layer and its rows are
``failed`` with the reason, without reading an estimate; an epoch marked diverged in the store (or whose activations are not
finite) becomes ``status="invalid"``.  The epoch of a ``diverged`` event that was never recorded
(:class:`ibtoolkit.IBCallback` stops recording at divergence) still gets one ``invalid`` row per
(estimator, layer) when all epochs are analysed, so the CSV says where and why a run stopped.
``ixt``/``ity`` are NaN unless ``status == "ok"``.
"""
from __future__ import annotations

import json
import math
import os
import uuid
from importlib import import_module
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .estimator import Estimator
from .layer_fit import as_extras, fit_layer, warn_clipping
from .parallel import Engine, Task, drop_worker_state, worker_state
from .registry import get_estimator, registered_class
from .table import BASE_COLUMNS, SATURATION_TOL, assemble_rows, read_plane, write_plane

__all__ = ["information_plane", "write_plane", "read_plane", "BASE_COLUMNS", "SATURATION_TOL",
           "CHUNK_BYTES"]

#: Memory budget of one chunk of activations (float32) in a task; wide layers get fewer epochs per read.
CHUNK_BYTES = 128 * 2**20


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------
def information_plane(store, estimators, layers=None, epochs=None, n_jobs=1, progress=True,
                      subsample=None, random_state=0, *, chunk=16, reuse=True) -> pd.DataFrame:
    """Estimate I(X;T) and I(T;Y) for every (estimator, layer, epoch) of a store.

    Parameters
    ----------
    store : ActivationStore, str or path-like
        An open store, or its directory (opened read-only with :func:`ibtoolkit.open_store`).
    estimators : str, dict, Estimator, or a list of these
        Registry names (``"exact"``), dict specs (``{"name": "kde", "noise_variance": 1e-3}``) or
        instances.  Instances must be of a registered class when ``n_jobs != 1`` (workers rebuild
        them from ``name`` and ``params()``).
    layers : list of str, optional
        Layers to analyse (default: all, in depth order).
    epochs : iterable of int, optional
        Recorded epochs to analyse (default: all committed epochs).
    n_jobs : int
        Parallel workers over (layer, epoch-chunk) tasks; 1 runs in this process, -1 uses all cores.
    progress : bool
        Show a tqdm progress bar (one tick per estimate).
    subsample : int, optional
        Use a seeded random subset of this many analysis samples (without replacement, the same
        subset for every layer and epoch); stated in the ``subsample``/``random_state`` columns.
    random_state : int
        Seed of that subset (``numpy.random.default_rng(random_state)``).
    chunk : int
        Most epochs per task (and per read).  Wide layers get fewer, so that one chunk of
        activations stays under :data:`CHUNK_BYTES` (at least one epoch): the memory of a task is
        about ``min(chunk, CHUNK_BYTES / (4 N width)) × N × width`` float32 values.
    reuse : bool
        Estimate each distinct recorded array of a layer once with deterministic estimators
        (:attr:`ibtoolkit.Estimator.deterministic`) and give the result to every epoch that recorded
        the same array (default).  ``False`` estimates every epoch; the table is the same.

    Returns
    -------
    pandas.DataFrame
        One row per (estimator, layer, epoch), sorted in that order (see the module docstring).
    """
    if not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    store = _as_store(store)
    instances, specs = _resolve_estimators(estimators, parallel=n_jobs != 1)
    layer_list = _select_layers(store, layers)
    epoch_list = _select_epochs(store, epochs)

    x_all = np.asarray(store.inputs)
    y_all = np.asarray(store.labels)
    sample_idx = _subsample_indices(x_all.shape[0], subsample, random_state)
    x = x_all if sample_idx is None else x_all[sample_idx]
    y = y_all if sample_idx is None else y_all[sample_idx]
    ceiling, h_y = _ceilings(x, y)
    invalid = _invalid_epochs(store)
    refused = _refusals(store, instances, layer_list)

    total = len(instances) * len(layer_list) * len(epoch_list)
    from tqdm.auto import tqdm

    results: list[tuple] = []
    with tqdm(total=total, desc=f"information plane {Path(store.directory).name}", unit="est",
              disable=not progress) as bar:
        if n_jobs == 1:
            ctx = _Context(store, x, y, instances, invalid, sample_idx, refused, reuse)
            everything = np.array_equal(epoch_list, np.asarray(store.epochs, dtype=np.int64))
            for layer in layer_list:
                size = _layer_chunk(chunk, x_all.shape[0], store.widths[layer])
                ctx.fitted = fit_layer(store, layer, instances, x, y, sample_idx, invalid, size)
                if everything:  # stream the whole layer, one chunk of epochs at a time
                    pieces = store.iter_chunks(layer, chunk=size)
                else:  # read only the selected epochs, chunk by chunk
                    pieces = ((part, store.read(layer, part)) for part in _split(epoch_list, size))
                for chunk_epochs, acts in pieces:
                    out = ctx.estimate_block(layer, np.asarray(chunk_epochs), acts)
                    del acts
                    results.extend(out)
                    bar.update(len(out))
        else:
            fitted = {layer: fit_layer(store, layer, instances, x, y, sample_idx, invalid,
                                       _layer_chunk(chunk, x_all.shape[0], store.widths[layer]))
                      for layer in layer_list}  # here, before any task: the workers get the fitted values
            results.extend(_estimate_in_parallel(store, layer_list, epoch_list, chunk, specs, fitted, sample_idx,
                                                 invalid, int(n_jobs), bar, refused, reuse))

    if epochs is None:  # diverged epochs that were never recorded: say so in the table
        for epoch, reason in _unrecorded_divergence(store).items():
            results.extend((k, layer, epoch, math.nan, math.nan, {}, "invalid", reason)
                           for k in range(len(instances)) for layer in layer_list)
    table = assemble_rows(store, results, instances, layer_list, ceiling, h_y, subsample, random_state, x.shape[0])
    warn_clipping(table)
    return table


# ------------------------------------------------------------------------------------------------
# per-epoch work, shared by the serial path and the workers
# ------------------------------------------------------------------------------------------------
class _Context:
    """What one process needs to estimate: the store, the (sub)sampled x and y, the instances."""

    def __init__(self, store, x, y, instances, invalid, sample_idx=None, refused=None, reuse=True):
        self.store = store
        self.refused = refused or {}  # (estimator index, layer) -> why it cannot measure that layer
        self.x = x
        self.y = y
        self.instances = instances
        self.invalid = invalid
        self.sample_idx = sample_idx
        self.fitted: list = [{} for _ in instances]  # per instance: fitted values of the layer, or the fit's error
        # nothing to reuse without a deterministic instance: then no checksum is looked up, no array compared
        self.reused = _ReusedEstimates(store if reuse and any(est.deterministic for est in instances) else None)

    def restore(self, fitted: list) -> None:
        """Set the fitted values of a layer (from :func:`~ibtoolkit.layer_fit.fit_layer` in the calling process)."""
        for est, values in zip(self.instances, fitted):
            if isinstance(values, dict):
                est.set_fitted(**values)
        self.fitted = fitted

    def estimate_block(self, layer: str, epochs: np.ndarray, acts: np.ndarray) -> list[tuple]:
        """Estimate every instance on every epoch of one chunk of one layer (instances fitted on it).

        Returns tuples ``(estimator index, layer, epoch, ixt, ity, extras, status, error)``.
        """
        out = []
        for i, epoch in enumerate(np.asarray(epochs, dtype=np.int64)):
            t = acts[i]
            if self.sample_idx is not None:
                t = t[self.sample_idx]
            epoch = int(epoch)
            reason = None
            if epoch in self.invalid:
                reason = self.invalid[epoch]
            elif np.issubdtype(t.dtype, np.floating) and not np.isfinite(t).all():
                reason = f"activations of layer {layer!r} at epoch {epoch} are not finite"
            if reason is None:
                earlier = self.reused.earlier_equal(layer, epoch, acts[i], epochs, acts)
            else:
                earlier = None
                self.reused.forget(layer, epoch)
            for k, est in enumerate(self.instances):
                fitted = self.fitted[k]
                if reason is not None:
                    out.append((k, layer, epoch, math.nan, math.nan, as_extras(fitted), "invalid", reason))
                    continue
                if isinstance(fitted, str):
                    out.append((k, layer, epoch, math.nan, math.nan, {}, "failed", fitted))
                    continue
                if (k, layer) in self.refused:
                    out.append((k, layer, epoch, math.nan, math.nan, {}, "failed", self.refused[(k, layer)]))
                    continue
                res = self.reused.get(est, k, layer, earlier)
                if res is None:
                    try:
                        res = est.estimate(self.x, t, self.y)
                    except Exception as exc:  # noqa: BLE001 - recorded in the row, never dropped
                        out.append((k, layer, epoch, math.nan, math.nan, dict(fitted), "failed",
                                    f"{type(exc).__name__}: {exc}"))
                        continue
                    self.reused.put(est, k, layer, epoch, res)
                out.append((k, layer, epoch, res.ixt, res.ity, {**fitted, **res.extras}, "ok", ""))
        return out


class _ReusedEstimates:
    """Results of deterministic estimators (:attr:`ibtoolkit.Estimator.deterministic`) per recorded
    array of a layer, so that an epoch that recorded exactly the array of an earlier epoch reuses
    them instead of estimating again (a BNN whose signs stopped flipping).

    Candidates come free from the store's log: every block's CRC-32
    (:meth:`~ibtoolkit.store.ActivationStore.block_checksums`).  An epoch whose checksum equals that
    of an earlier estimated epoch is compared with it element by element (the earlier array from
    the chunk at hand, or read again from the store), and only an exact match reuses the results:
    for a deterministic estimator with fixed fitted values those are what a new call returns.  Kept:
    the results (a few floats per estimated array) and the one array last read again, no others.
    A store-like object without checksums, or ``store=None`` (``information_plane(..., reuse=False)``),
    gets no reuse.
    """

    def __init__(self, store):
        self._store = store
        self._checksums: dict[str, dict[int, int]] = {}
        self._first: dict[tuple, int] = {}       # (layer, crc) -> first valid epoch with that checksum
        self._results: dict[tuple, object] = {}  # (instance index, layer, epoch) -> EstimateResult
        self._held: tuple = (None, None, None)   # (layer, epoch, array) last read again from the store

    def earlier_equal(self, layer: str, epoch: int, t: np.ndarray, epochs, acts) -> int | None:
        """An earlier epoch whose recorded array equals ``t`` (the whole recorded array of ``epoch``),
        or None; ``epochs``/``acts``: the chunk at hand, where the earlier array may already be."""
        crc = self._checksum(layer, epoch)
        if crc is None:
            return None
        earlier = self._first.setdefault((layer, crc), epoch)
        if earlier == epoch:
            return None
        where = np.flatnonzero(np.asarray(epochs) == earlier)
        if where.size:
            before = acts[where[0]]
        else:  # read it again once, and keep it while the repeats go on (a stalled BNN, chunk after chunk)
            if self._held[:2] != (layer, earlier):
                self._held = (layer, earlier, self._store.read_epoch(layer, earlier))
            before = self._held[2]
        return earlier if np.array_equal(before, t) else None

    def forget(self, layer: str, epoch: int) -> None:
        """``epoch`` was not estimated (invalid): later equal arrays must not look for its results."""
        crc = self._checksum(layer, epoch)
        if crc is not None and self._first.get((layer, crc)) == epoch:
            del self._first[(layer, crc)]

    def get(self, est, k: int, layer: str, earlier: int | None):
        return self._results.get((k, layer, earlier)) if earlier is not None and est.deterministic else None

    def put(self, est, k: int, layer: str, epoch: int, result) -> None:
        if est.deterministic:
            self._results[(k, layer, epoch)] = result

    def _checksum(self, layer: str, epoch: int) -> int | None:
        sums = self._checksums.get(layer)
        if sums is None:
            reader = getattr(self._store, "block_checksums", None)
            sums = self._checksums[layer] = reader(layer) if callable(reader) else {}
        return sums.get(epoch)


def _estimate_in_parallel(store, layer_list, epoch_list, chunk, specs, fitted, sample_idx, invalid, n_jobs, bar,
                          refused=None, reuse=True):
    """The (layer, epoch chunk) tasks on :class:`ibtoolkit.parallel.Engine` (joblib: loky processes,
    or the backend the caller activated, e.g. Dask); rows in task order."""
    n = int(np.asarray(store.inputs).shape[0])
    token = uuid.uuid4().hex
    directory = str(store.directory)
    tasks = [Task("estimate", f"{layer} epochs {part[0]}-{part[-1]}", _worker_task,
                  (directory, token, layer, part, specs, fitted[layer], sample_idx, invalid, refused, reuse))
             for layer in layer_list for part in _split(epoch_list, _layer_chunk(chunk, n, store.widths[layer]))]
    try:
        outcomes = Engine(jobs=n_jobs).map(tasks, _BarOfEstimates(bar), capture=False)
    finally:
        drop_worker_state(token)  # a task may have run in this process (a single task, a threading backend)
    return [row for outcome in outcomes for row in outcome.value]


class _BarOfEstimates:
    """Moves the plane's progress bar by the number of estimates of each finished task."""

    def __init__(self, bar):
        self.bar = bar

    def done(self, outcome) -> None:
        self.bar.update(len(outcome.value))


def _worker_task(directory, token, layer, epochs, specs, fitted, sample_idx, invalid, refused=None, reuse=True):
    """One (layer, epoch chunk) task in a worker: everything it gets is plain, picklable data, the
    layer's fitted values included.  The worker opens the store and builds the estimator instances
    once per call (:func:`worker_state`), so per-instance caches of the inputs serve all of the
    call's tasks there."""
    ctx = worker_state(token, lambda: _worker_context(directory, specs, sample_idx, invalid, refused, reuse))
    ctx.restore(fitted)
    epochs = np.asarray(epochs, dtype=np.int64)
    return ctx.estimate_block(layer, epochs, ctx.store.read(layer, epochs=epochs))


def _worker_context(directory, specs, sample_idx, invalid, refused=None, reuse=True) -> _Context:
    from .store import open_store

    store = open_store(directory)
    x = np.asarray(store.inputs)
    y = np.asarray(store.labels)
    if sample_idx is not None:
        x, y = x[sample_idx], y[sample_idx]
    return _Context(store, x, y, [_instantiate(spec) for spec in specs], invalid, sample_idx, refused, reuse)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _as_store(store):
    if isinstance(store, (str, os.PathLike)):
        from .store import open_store

        return open_store(store)
    for attr in ("directory", "layers", "epochs", "inputs", "labels", "read", "iter_chunks"):
        if not hasattr(store, attr):
            raise ValueError(f"store must be an ActivationStore or a store directory; "
                             f"{type(store).__name__} has no {attr!r}")
    return store


def _resolve_estimators(estimators, *, parallel: bool):
    """Instances plus the plain specs ``{"name", "params", "module"}`` workers rebuild them from."""
    if isinstance(estimators, (str, Mapping, Estimator)):
        estimators = [estimators]
    try:
        items = list(estimators)
    except TypeError:
        raise ValueError(f"estimators must be a name, dict, Estimator or a list of these, "
                         f"got {type(estimators).__name__}") from None
    if not items:
        raise ValueError("estimators is empty: give at least one estimator name")
    instances, specs = [], []
    for item in items:
        est = get_estimator(item)
        name = est.name or type(est).__name__
        origin = getattr(type(est), "_registry_origin", type(est))
        spec = {"name": name, "params": est.params(), "module": getattr(origin, "__module__", None)}
        if parallel:
            if registered_class(name) is not type(est):
                raise ValueError(f"estimator {est!r} is not a registered class, so parallel workers "
                                 f"cannot rebuild it; register it with @register_estimator or use n_jobs=1")
            try:
                json.dumps(spec["params"])
            except TypeError as exc:
                raise ValueError(f"estimator {name!r} has parameters that are not JSON-friendly "
                                 f"({exc}); workers cannot rebuild it") from exc
        instances.append(est)
        specs.append(spec)
    return instances, specs


def _instantiate(spec):
    """Rebuild an estimator in a worker; import its defining module first if it is unknown there."""
    if registered_class(spec["name"]) is None and spec.get("module"):
        import_module(spec["module"])
    return get_estimator(spec["name"], **spec["params"])


def _select_layers(store, layers):
    known = list(store.layers)
    if layers is None:
        return known
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; the store has {known}")
    return [name for name in known if name in set(layers)]


def _select_epochs(store, epochs) -> np.ndarray:
    recorded = np.asarray(store.epochs, dtype=np.int64)
    if epochs is None:
        return recorded
    if isinstance(epochs, (int, np.integer)):
        epochs = [epochs]
    wanted = np.asarray(list(epochs))
    if wanted.size and not np.issubdtype(wanted.dtype, np.integer):
        raise ValueError(f"epochs must be integers, got dtype {wanted.dtype}")
    wanted = np.unique(wanted.astype(np.int64))
    missing = np.setdiff1d(wanted, recorded)
    if missing.size:
        raise ValueError(f"epoch(s) {missing.tolist()} are not recorded in the store "
                         f"(recorded: {len(recorded)} epochs from {recorded[:1].tolist()} to {recorded[-1:].tolist()})")
    return wanted


def _layer_chunk(chunk: int, n: int, width: int) -> int:
    """Epochs per read for one layer: at most ``chunk``, and within :data:`CHUNK_BYTES` if possible."""
    per_epoch = 4 * int(n) * int(width)
    return int(max(1, min(int(chunk), CHUNK_BYTES // max(per_epoch, 1))))


def _split(epochs: np.ndarray, size: int) -> list[np.ndarray]:
    return [epochs[i:i + size] for i in range(0, len(epochs), size)]


def _subsample_indices(n: int, subsample, random_state):
    if subsample is None:
        return None
    if isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer)):
        raise ValueError(f"subsample must be a positive integer number of samples, got {subsample!r}")
    if not 1 <= subsample <= n:
        raise ValueError(f"subsample must be between 1 and the {n} analysis samples, got {subsample}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise ValueError(f"random_state must be an integer seed, got {random_state!r}")
    rng = np.random.default_rng(int(random_state))
    return np.sort(rng.choice(n, size=int(subsample), replace=False))


def _ceilings(x, y) -> tuple[float, float]:
    """log2 of the number of distinct input rows, and H(Y) in bits."""
    x2 = x.reshape(x.shape[0], -1)
    n_distinct = np.unique(np.ascontiguousarray(x2), axis=0).shape[0]
    _, counts = np.unique(y, return_counts=True)
    p = counts / counts.sum()
    return math.log2(n_distinct), float(-(p * np.log2(p)).sum()) + 0.0


def declared_discrete(store) -> dict[str, bool | None]:
    """Per layer: True when the store declares it discrete, False when continuous, None when unknown.

    The declaration is the tap's quantizer in the manifest (``model.taps[i].discrete``, written by
    :class:`ibtoolkit.IBCallback`); a store without it (made by hand) declares its ``binary`` (±1)
    layers discrete and says nothing about the others.
    """
    manifest = getattr(store, "manifest", None) or {}
    model = manifest.get("model") if isinstance(manifest.get("model"), Mapping) else {}
    taps = {t.get("name"): t for t in (model.get("taps") or []) if isinstance(t, Mapping)}
    binary = dict(getattr(store, "binary", {}) or {})
    out = {}
    for layer in store.layers:
        declared = taps.get(layer, {}).get("discrete")
        out[layer] = bool(declared) if isinstance(declared, bool) else (True if binary.get(layer) else None)
    return out


def _refusals(store, instances, layers) -> dict[tuple[int, str], str]:
    """(estimator index, layer) -> why that estimator refuses that layer, asked once per pair."""
    declared = declared_discrete(store)
    out = {}
    for k, est in enumerate(instances):
        for layer in layers:
            reason = est.refusal(layer, declared.get(layer))
            if reason:
                out[(k, layer)] = f"refused: {reason}"
    return out


def _invalid_epochs(store) -> dict[int, str]:
    """Recorded epochs at or after a ``diverged`` event, mapped to the event's message."""
    out: dict[int, str] = {}
    events = getattr(store, "events", None) or []
    recorded = np.asarray(store.epochs, dtype=np.int64)
    for event in events:
        if event.get("kind") != "diverged" or event.get("epoch") is None:
            continue
        start = int(event["epoch"])
        message = f"diverged at epoch {start}: {event.get('message', '')}".rstrip(": ")
        for e in recorded[recorded >= start]:
            out.setdefault(int(e), message)
    return out


def _unrecorded_divergence(store) -> dict[int, str]:
    """Epochs of ``diverged`` events that are not recorded epochs, mapped to their message."""
    recorded = set(np.asarray(store.epochs, dtype=np.int64).tolist())
    out: dict[int, str] = {}
    for event in getattr(store, "events", None) or []:
        epoch = event.get("epoch")
        if event.get("kind") != "diverged" or epoch is None or int(epoch) in recorded:
            continue
        out.setdefault(int(epoch), f"diverged at epoch {int(epoch)}: {event.get('message', '')}".rstrip(": "))
    return out
