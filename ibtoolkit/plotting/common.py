"""Shared by every figure: saving, the data preparation of the tidy table, colours and phase markers."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["save_figure", "layer_colors"]

_LAYER_CMAP = "tab10"
_FIT_MARKER, _PEAK_MARKER = "D", "*"
_GROUP_COLORS = {"full": "#1f77b4", "binary": "#d62728"}


def save_figure(fig: Figure, path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<path>.<fmt>`` for each format (default PNG and PDF); returns the paths.

    ``path`` is given without suffix; parent directories are created.
    """
    path = Path(path)
    if path.suffix.lower().lstrip(".") in {"png", "pdf", "svg", "jpg", "jpeg", "eps"}:
        raise ValueError(f"save_figure takes the path without suffix (got {path}); formats={list(formats)} "
                         f"are appended")
    if not formats:
        raise ValueError("save_figure needs at least one format")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = path.with_name(f"{path.name}.{fmt}")
        fig.savefig(target, dpi=dpi, format=fmt)
        out.append(target)
    return out


def _new_figure(ncols=1, nrows=1, width=5.6, height=4.4, **subplot_kw):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


# ------------------------------------------------------------------------------------------------
# data preparation
# ------------------------------------------------------------------------------------------------
def _ok_rows(df: pd.DataFrame, needed: Iterable[str]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame (the information-plane table), got {type(df).__name__}")
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"the table lacks column(s) {missing}; it has {list(df.columns)}")
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    if df.empty:
        raise ValueError("nothing to plot: the table has no rows with status 'ok'")
    return df


def _single(df: pd.DataFrame, columns: Sequence[str], what: str) -> dict:
    """Values of ``columns`` that must be unique in ``df`` (a figure shows one model/estimator)."""
    cols = [c for c in columns if c in df.columns]
    if not cols:
        return {}
    combos = df[cols].astype(str).drop_duplicates()
    if len(combos) > 1:
        raise ValueError(f"the table holds {len(combos)} different {what} "
                         f"({combos.head(4).to_dict('records')}...); filter it to one first, "
                         f"e.g. df[df.estimator_label == ...]")
    return {c: df[c].iloc[0] for c in cols}


def _layer_order(df: pd.DataFrame) -> list[str]:
    if "layer_index" in df.columns:
        return df.sort_values("layer_index", kind="stable")["layer"].drop_duplicates().tolist()
    return df["layer"].drop_duplicates().tolist()


def layer_colors(layers: Sequence[str]) -> dict:
    """The colour of each layer, by depth (``tab10``), shared by every figure."""
    cmap = matplotlib.colormaps[_LAYER_CMAP]
    return {layer: cmap(i % cmap.N) for i, layer in enumerate(layers)}


def _quantiles(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Median and interquartile range of ``values`` over runs (seeds), per ``keys``."""
    g = df.groupby(keys, sort=True)[values]
    med = g.median().add_suffix("_med")
    lo = g.quantile(0.25).add_suffix("_lo")
    hi = g.quantile(0.75).add_suffix("_hi")
    n = g.size().rename("n")
    return pd.concat([med, lo, hi, n], axis=1).reset_index()


def _n_runs(df: pd.DataFrame) -> int:
    return int(df["run"].nunique()) if "run" in df.columns else 1


def _epoch_norm(epochs) -> SymLogNorm:
    vmax = max(float(np.max(epochs)), 1.0)
    return SymLogNorm(linthresh=1.0, linscale=0.5, vmin=0.0, vmax=vmax, base=10)


def _describe(info: dict, n_runs: int) -> str:
    model = info.get("model")
    detail = ", ".join(str(info[k]) for k in ("precision", "variant") if k in info and _present(info[k]))
    parts = []
    if _present(model):
        parts.append(f"{model}" + (f" ({detail})" if detail else ""))
    elif detail:
        parts.append(detail)
    if _present(info.get("dataset")):
        parts.append(str(info["dataset"]))
    label = info.get("estimator_label", info.get("estimator"))
    if _present(label):
        parts.append(str(label))
    if n_runs > 1:
        parts.append(f"median of {n_runs} seeds, IQR band")
    return " · ".join(parts)


def _wrap(text: str, width: int) -> str:
    """Wrap a title to lines of at most ``width`` characters (keeps explicit line breaks)."""
    return "\n".join(textwrap.fill(line, width=max(int(width), 20), break_long_words=False,
                                    break_on_hyphens=False) for line in text.split("\n"))


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value is not pd.NA \
        and str(value) != ""


def _phase_epochs(phases, layer) -> tuple[float, float]:
    """Median e_fit and e_peak of one layer in a phase table (NaN if absent)."""
    if phases is None:
        return np.nan, np.nan
    rows = phases[phases["layer"] == layer]
    if rows.empty:
        return np.nan, np.nan
    return (float(pd.to_numeric(rows["e_fit"], errors="coerce").median()),
            float(pd.to_numeric(rows["e_peak"], errors="coerce").median()))


def _check_phases(phases):
    if phases is None:
        return None
    if not isinstance(phases, pd.DataFrame):
        raise ValueError(f"phases must be a DataFrame with columns layer, e_fit, e_peak, got {type(phases).__name__}")
    missing = [c for c in ("layer", "e_fit", "e_peak") if c not in phases.columns]
    if missing:
        raise ValueError(f"phases lacks column(s) {missing}; it needs layer, e_fit, e_peak")
    return phases


def _nearest(epochs: np.ndarray, target: float) -> int | None:
    """Index of the recorded epoch nearest to ``target`` in log(epoch + 1)."""
    if not np.isfinite(target) or len(epochs) == 0:
        return None
    return int(np.argmin(np.abs(np.log1p(epochs) - np.log1p(max(target, 0.0)))))


def _ceilings(df):
    c = df["ixt_ceiling"].dropna() if "ixt_ceiling" in df.columns else pd.Series(dtype=float)
    h = df["h_y"].dropna() if "h_y" in df.columns else pd.Series(dtype=float)
    return (float(c.max()) if len(c) else None), (float(h.max()) if len(h) else None)


def _phase_legend(ax, extra_handles=()):
    handles = list(extra_handles) + [
        Line2D([], [], ls="none", marker=_FIT_MARKER, mfc="white", mec="black", ms=7, label="$e_{fit}$ (end of fitting)"),
        Line2D([], [], ls="none", marker=_PEAK_MARKER, mfc="white", mec="black", ms=11, label="$e_{peak}$ (max I(X;T))")]
    return handles
