"""The fit step of the information plane: each estimator fitted on one layer of one run before it estimates.

:func:`fit_layer` streams a layer's activations at every valid recorded epoch of the store to
:meth:`ibtoolkit.Estimator.fit` (only for estimators whose ``needs_fit_data`` is true; the others
see x and y alone) and returns what each fit produced: its :meth:`~ibtoolkit.Estimator.fitted_params`,
or the error text of a failed fit.  :func:`warn_clipping` warns once per (estimator, layer) whose
fixed bin range clipped values.  Used by :func:`ibtoolkit.information_plane`, in the calling process,
before any task is dispatched.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["fit_layer", "warn_clipping", "as_extras"]


def fit_layer(store, layer, instances, x, y, sample_idx, invalid, size) -> list:
    """Fit every instance on one layer of this run; per instance its fitted values or, when the
    fit failed, the error text (then every row of that estimator and layer is ``failed``)."""
    fitted = []
    for est in instances:
        stream = _fit_stream(store, layer, sample_idx, invalid, size) if est.needs_fit_data else ()
        try:
            est.fit(x, stream, y)
            fitted.append(dict(est.fitted_params()))
        except Exception as exc:  # noqa: BLE001 - recorded in the rows, never dropped
            fitted.append(f"fit on layer {layer!r} failed: {type(exc).__name__}: {exc}")
    return fitted


def _fit_stream(store, layer, sample_idx, invalid, size):
    """Every valid recorded epoch of one layer, one (N, d) array at a time, read chunk by chunk
    (epochs marked invalid, and epochs with non-finite activations, are left out)."""
    for epochs, acts in store.iter_chunks(layer, chunk=size):
        for epoch, t in zip(np.asarray(epochs), acts):
            if int(epoch) in invalid:
                continue
            if sample_idx is not None:
                t = t[sample_idx]
            if np.issubdtype(t.dtype, np.floating) and not np.isfinite(t).all():
                continue
            yield t


def as_extras(fitted) -> dict:
    """The fitted values as row extras (none when the fit failed)."""
    return dict(fitted) if isinstance(fitted, dict) else {}


def warn_clipping(table: pd.DataFrame) -> None:
    """One warning per (estimator, layer) whose fixed bin range clipped values (``clipped_fraction`` > 0)."""
    if "clipped_fraction" not in table.columns or table.empty:
        return
    frac = pd.to_numeric(table["clipped_fraction"], errors="coerce")
    worst = frac.groupby([table["estimator_label"], table["layer"]], sort=False).max()
    for (label, layer), value in worst[worst > 0].items():
        warnings.warn(f"{label} clipped values of layer {layer!r} into its edge bins (up to {value:.1%} of the "
                      f"values of an epoch; see the clipped_fraction column): clipping reads as compression",
                      RuntimeWarning, stacklevel=3)
