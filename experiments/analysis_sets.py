"""Information planes on the training rows and on the held-out rows of a recorded pool.

The study (docs/study/protocol.md, section 2.3) records every run on its whole pool (``analysis="all"``:
training and held-out samples, in the dataset's order) and computes three planes from the same store:
on all N rows, on the training rows, on the held-out rows.  The rows come from the run's seeded split
(:func:`experiments.datasets.train_test_split`), so nothing beyond the run config is needed.

:class:`RowSubset` is a read-only view of a store restricted to some rows: ``inputs``, ``labels`` and
every activation array are sliced to those rows, everything else (layers, epochs, metrics, run
metadata) is the store's.  :func:`subset_plane` runs :func:`ibtoolkit.information_plane` on such a view
and adds a ``samples`` column naming the rows (``all``, ``train`` or ``held-out``); ``n_samples``,
``ixt_ceiling`` = log2 of the distinct inputs among those rows, and ``h_y`` are those of the subset.
"""
from __future__ import annotations

import numpy as np

__all__ = ["analysis_rows", "RowSubset", "subset_plane", "SAMPLE_SETS"]

#: Names of the planes of one run, in report order.
SAMPLE_SETS = ("all", "train", "held-out")


def analysis_rows(run_config: dict, n: int) -> dict[str, np.ndarray]:
    """Rows of a run's recorded pool (``n`` rows) that are training and held-out samples.

    Only ``analysis="all"`` with a seeded split (``split["test_fraction"]`` set) records both; the
    store then holds the pool in the dataset's order, so the split's index arrays are the rows.
    Returns ``{"all": arange(n), "train": sorted train rows, "held-out": sorted held-out rows}``.
    """
    from experiments.datasets import train_test_split

    if run_config.get("analysis", "all") != "all":
        raise ValueError(f"run {run_config.get('run_id')!r} recorded analysis={run_config.get('analysis')!r}; "
                         f"only analysis='all' holds both training and held-out rows")
    split = run_config.get("split") or {}
    if split.get("test_fraction") is None:
        raise ValueError(f"run {run_config.get('run_id')!r} uses the dataset's standard split; its pool is "
                         f"not recorded as one array, so there are no train/held-out rows to select")
    train, test = train_test_split(int(n), split["test_fraction"], split.get("seed", 0))
    return {"all": np.arange(int(n)), "train": np.sort(train), "held-out": np.sort(test)}


class RowSubset:
    """A read-only view of an activation store restricted to ``rows`` (sorted, distinct, in range)."""

    def __init__(self, store, rows):
        rows = np.asarray(rows)
        n = int(np.asarray(store.labels).shape[0])
        if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"rows must be a non-empty 1-d array of row indices, got shape {rows.shape}, "
                             f"dtype {rows.dtype}")
        if rows.min() < 0 or rows.max() >= n or np.any(np.diff(rows) <= 0):
            raise ValueError(f"rows must be sorted, distinct indices in [0, {n}) of the store's pool")
        self._store = store
        self.rows = rows.astype(np.int64)

    def __getattr__(self, name):  # layers, widths, binary, epochs, metrics, run, manifest, directory, ...
        return getattr(self._store, name)

    @property
    def inputs(self) -> np.ndarray:
        return np.asarray(self._store.inputs)[self.rows]

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self._store.labels)[self.rows]

    def read(self, layer: str, epochs=None) -> np.ndarray:
        return self._store.read(layer, epochs)[:, self.rows]

    def read_epoch(self, layer: str, epoch: int) -> np.ndarray:
        return self._store.read_epoch(layer, epoch)[self.rows]

    def iter_chunks(self, layer: str, chunk: int = 16):
        for part, acts in self._store.iter_chunks(layer, chunk=chunk):
            yield part, acts[:, self.rows]


def subset_plane(store, estimators, rows, samples: str, **kwargs):
    """:func:`ibtoolkit.information_plane` on the ``rows`` of ``store``, with a ``samples`` column.

    ``rows`` None means every row.  Runs in this process (``n_jobs=1``: parallel workers reopen the
    store by its directory and would see every row).
    """
    from ibtoolkit import information_plane, open_store

    if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__"):
        store = open_store(store)
    if kwargs.get("n_jobs", 1) != 1:
        raise ValueError("subset_plane runs with n_jobs=1 (workers would reopen the whole store)")
    view = store if rows is None else RowSubset(store, rows)
    df = information_plane(view, estimators, **kwargs)
    df.insert(df.columns.get_loc("n_samples") + 1, "samples", samples)
    return df
