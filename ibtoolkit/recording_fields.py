"""What :class:`~ibtoolkit.IBCallback` writes about a run besides the activations.

The analysis labels (validated integer labels, or exact one-hot rows), the scalar Keras metrics of an
epoch (kept with its commit), the model's description for the manifest (name, class, parameter count,
Keras config, Larq summary, taps) and the default store directory.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .validation import as_labels

__all__ = ["analysis_labels", "default_directory", "describe_model", "scalar_metrics"]


def default_directory(model_name: str, root="ib_runs") -> Path:
    """A fresh ``<root>/<model name>-<YYYYmmdd-HHMMSS>`` (suffix ``-2``, ``-3``... if taken)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(model_name)) or "model"
    base = Path(root) / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def analysis_labels(y, n: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:  # accept exact one-hot rows only, never a soft argmax
        ok = np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()
        if not ok:
            raise ValueError(f"y has shape {arr.shape} but its rows are not one-hot; give integer labels (N,)")
        arr = arr.argmax(axis=1)
    labels = as_labels(arr, name="y")
    if labels.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {labels.shape[0]}")
    return labels


def scalar_metrics(logs) -> dict[str, float]:
    out = {}
    for key, value in (logs or {}).items():
        arr = np.asarray(value)
        if arr.ndim == 0 and (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            out[str(key)] = float(arr)
    return out


def describe_model(model, taps) -> dict:
    desc = {"name": model.name, "class": type(model).__name__, "n_params": int(model.count_params())}
    try:
        desc["config"] = json.loads(model.to_json())
    except (NotImplementedError, TypeError, ValueError) as exc:  # subclassed models have no config
        desc["config"] = None
        desc["config_error"] = f"{type(exc).__name__}: {exc}"
    lines: list[str] = []
    try:
        import larq as lq

        lq.models.summary(model, print_fn=lines.append)
    except (ValueError, TypeError, AttributeError) as exc:  # fall back to the Keras summary, say why
        lines = [f"(larq summary unavailable: {type(exc).__name__}: {exc})"]
        model.summary(print_fn=lines.append)
    desc["summary"] = "\n".join(lines)
    desc["taps"] = [t.describe() for t in taps]
    return desc
