"""The information-plane table: its columns, its rows assembled from estimates, and its CSV form.

One tidy row per (estimator, layer, epoch).  The columns are :data:`BASE_COLUMNS`, then the
estimators' extras, then the Keras metrics of the epoch (a name that clashes with a base column gets
the prefix ``metric_``; an extra, ``extra_``), then ``status`` and ``error``.  The run columns come
from the store's run metadata (``manifest["run"]``, :class:`ibtoolkit.IBCallback` ``run=``).
:func:`write_plane` and :func:`read_plane` round-trip a table through CSV with its column types.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["BASE_COLUMNS", "END_COLUMNS", "SATURATION_TOL", "assemble_rows", "write_plane", "read_plane"]

#: Columns every table starts with, in this order.
BASE_COLUMNS = ["run", "dataset", "model", "precision", "variant", "seed",
                "estimator", "estimator_params", "estimator_label",
                "layer", "layer_index", "width", "binary", "epoch",
                "ixt", "ity", "ixt_ceiling", "h_y", "saturated",
                "subsample", "random_state", "n_samples"]
#: Columns every table ends with.
END_COLUMNS = ["status", "error"]
_RESERVED = set(BASE_COLUMNS) | set(END_COLUMNS)
_RUN_KEYS = ("dataset", "model", "precision", "variant", "seed")

#: ``saturated`` is ``ixt >= ixt_ceiling - SATURATION_TOL`` (bits) unless the estimator reports it.
SATURATION_TOL = 1e-6

_STRING_COLUMNS = ["run", "dataset", "model", "precision", "variant", "estimator", "estimator_params",
                   "estimator_label", "layer", "status", "error"]


def write_plane(df: pd.DataFrame, path) -> Path:
    """Write a plane table to CSV (``estimator_params`` stays a JSON string); returns the path."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"write_plane needs a pandas DataFrame, got {type(df).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_plane(path) -> pd.DataFrame:
    """Read a CSV written by :func:`write_plane`, restoring column types.

    String columns stay strings (``error`` is ``""`` when empty), ``binary`` is bool,
    ``saturated`` a nullable boolean, ``subsample`` and (numeric) ``seed`` nullable integers, and
    floats round-trip exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no information-plane CSV at {path}")
    header = pd.read_csv(path, nrows=0).columns
    dtypes = {c: str for c in _STRING_COLUMNS if c in header}
    df = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={c: [""] for c in header
                     if c not in dtypes}, float_precision="round_trip")
    for col in _STRING_COLUMNS:
        if col in df and col != "error":
            df[col] = df[col].mask(df[col] == "")
    for col in ("layer_index", "width", "epoch", "n_samples", "random_state"):
        if col in df and df[col].notna().all():
            df[col] = df[col].astype(np.int64)
    if "binary" in df:
        df["binary"] = df["binary"].map(_to_bool).astype(bool)
    if "saturated" in df:
        df["saturated"] = df["saturated"].map(_to_bool).astype("boolean")
    for col in ("subsample", "seed"):
        if col in df and pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].astype("Int64")
    return df


def _run_metadata(store) -> dict[str, Any]:
    """The run columns of the plane: ``manifest["run"]`` (``IBCallback(run=...)``); a store without
    run metadata (a user's own IBCallback without ``run=``) gives the dataset's name (``"unnamed"``
    when none was given), the model's name as ``model`` and ``variant``, ``precision`` from the
    layers (``binary`` when every recorded layer is ±1, ``full`` when none is, ``mixed`` otherwise)
    and None for the seed."""
    manifest = getattr(store, "manifest", None) or {}
    run = manifest.get("run") if isinstance(manifest.get("run"), Mapping) else {}
    described = {key: manifest.get(key) for key in ("dataset", "model")}
    meta = {}
    for key in _RUN_KEYS:
        value = run.get(key)
        if value is None and isinstance(described.get(key), Mapping):
            value = described[key].get("name")
        if isinstance(value, Mapping):
            value = value.get("name")
        meta[key] = value
    if meta["precision"] is None:
        flags = set((getattr(store, "binary", None) or {}).values())
        meta["precision"] = None if not flags else ("binary" if flags == {True} else
                                                    "full" if flags == {False} else "mixed")
    if meta["variant"] is None:
        meta["variant"] = meta["model"]
    if meta["dataset"] is None:
        meta["dataset"] = "unnamed"
    return meta


def _scalar(value):
    """Extras values as table cells: numbers and strings as they are, anything else as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value, default=str)


def assemble_rows(store, results, instances, layer_list, ceiling, h_y, subsample, random_state, n_used) -> pd.DataFrame:
    """The plane table of ``results``, tuples ``(estimator index, layer, epoch, ixt, ity, extras, status,
    error)``: one row each, run columns from the store, extras and metrics as extra columns, sorted by
    (estimator, layer in depth order, epoch)."""
    meta = _run_metadata(store)
    run_id = Path(store.directory).name
    all_layers = list(store.layers)
    metrics = {int(k): dict(v) for k, v in (getattr(store, "metrics", None) or {}).items()}
    metric_keys = sorted({key for m in metrics.values() for key in m})
    metric_cols = {key: (f"metric_{key}" if key in _RESERVED else key) for key in metric_keys}
    est_info = [(est.name or type(est).__name__, json.dumps(est.params(), sort_keys=True), est.describe())
                for est in instances]
    rows, extra_cols = [], []
    for k, layer, epoch, ixt, ity, extras, status, error in results:
        name, params, label = est_info[k]
        row = {"run": run_id, **meta, "estimator": name, "estimator_params": params, "estimator_label": label,
               "layer": layer, "layer_index": all_layers.index(layer), "width": int(store.widths[layer]),
               "binary": bool(store.binary[layer]), "epoch": int(epoch), "ixt": ixt, "ity": ity,
               "ixt_ceiling": ceiling, "h_y": h_y, "saturated": pd.NA,
               "subsample": int(subsample) if subsample is not None else pd.NA,
               "random_state": int(random_state), "n_samples": int(n_used)}
        if status == "ok":
            sat = extras.get("saturated")
            row["saturated"] = bool(sat) if sat is not None else bool(ixt >= ceiling - SATURATION_TOL)
        for key, value in extras.items():
            if key == "saturated":
                continue
            if key in ("ixt_ceiling", "h_y") and _same_number(value, row[key]):
                continue  # the table's own ceilings, computed once on the same x and y
            col = f"extra_{key}" if key in _RESERVED or key in metric_cols.values() else key
            if col not in row:
                extra_cols.append(col)
            row[col] = _scalar(value)
        for key, col in metric_cols.items():
            row[col] = metrics.get(int(epoch), {}).get(key, math.nan)
        row["status"] = status
        row["error"] = error
        rows.append(row)
    extra_order = list(dict.fromkeys(extra_cols))
    columns = BASE_COLUMNS + extra_order + list(metric_cols.values()) + END_COLUMNS
    df = pd.DataFrame(rows, columns=columns)
    if not rows:
        return df
    df["saturated"] = df["saturated"].astype("boolean")
    df["subsample"] = df["subsample"].astype("Int64")
    if meta["seed"] is None or isinstance(meta["seed"], (int, np.integer)) and not isinstance(meta["seed"], bool):
        df["seed"] = df["seed"].astype("Int64")
    for col in ("ixt", "ity", "ixt_ceiling", "h_y"):
        df[col] = df[col].astype(float)
    order = {layer: i for i, layer in enumerate(layer_list)}
    est_idx = [r[0] for r in results]
    df["_k"] = est_idx
    df["_l"] = df["layer"].map(order)
    df = df.sort_values(["_k", "_l", "epoch"], kind="stable").drop(columns=["_k", "_l"])
    return df.reset_index(drop=True)


def _same_number(a, b, tol=1e-9) -> bool:
    try:
        return abs(float(a) - float(b)) <= tol
    except (TypeError, ValueError):
        return False


def _to_bool(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return pd.NA
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"not a boolean cell in a plane CSV: {value!r}")
