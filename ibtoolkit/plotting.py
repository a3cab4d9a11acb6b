"""Figures of the information-plane table (see :mod:`ibtoolkit.plane`) and of the phase analysis.

Every function takes a tidy DataFrame, returns a :class:`matplotlib.figure.Figure` and, with
``path=...``, also writes ``<path>.png`` and ``<path>.pdf`` (:func:`save_figure`).  Figures are
built on :class:`~matplotlib.figure.Figure` directly (Agg canvas), never through ``pyplot``, so
nothing here changes global matplotlib state, opens windows or keeps figures alive.

Conventions shared by all figures
---------------------------------
* Axes in **bits**: x = I(X;T), y = I(T;Y) (Shwartz-Ziv & Tishby, 2017, Fig. 2 style: one
  trajectory per layer, points coloured by epoch).  The two ceilings are dashed lines:
  ``log2 N`` (``ixt_ceiling``, distinct analysis inputs) and ``H(Y)`` (``h_y``).
* Layers keep one colour (``tab10`` by depth) in every figure; epochs use one colormap
  (``viridis`` by default) with a *symmetric-log* scale (``SymLogNorm(linthresh=1)``): linear
  on [0, 1] and logarithmic above, so epoch 0 (before training) has a place on a log axis without
  shifting the other epochs.  The MI-vs-epoch and metrics figures use the same ``symlog`` x axis.
* Several seeds (several ``run`` values of one model and estimator): the line is the per-epoch
  **median** over seeds and the band the **interquartile range** (25th-75th percentile); in the
  plane the band is drawn as translucent IQR boxes around each median point.
* Only rows with ``status == "ok"`` are drawn.
* Phase markers (from :mod:`ibtoolkit.phases`): a DataFrame with columns ``layer``, ``e_fit``,
  ``e_peak`` (median over its rows per layer); ◆ marks ``e_fit`` (end of fitting), ★ ``e_peak``
  (maximum of I(X;T)), placed on the recorded epoch nearest in log(epoch + 1).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

__all__ = ["plot_information_plane", "plot_mi_vs_epoch", "plot_metrics", "plot_estimator_grid",
           "plot_overlap", "save_figure", "layer_colors"]

_LAYER_CMAP = "tab10"
_FIT_MARKER, _PEAK_MARKER = "D", "*"
_GROUP_COLORS = {"full": "#1f77b4", "binary": "#d62728"}


# ------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# the information plane
# ------------------------------------------------------------------------------------------------
def _draw_plane(ax, df, phases, cmap, norm, colors, ceilings=True):
    """Draw one plane on ``ax``; returns the legend handles."""
    agg = _quantiles(df, ["layer", "epoch"], ["ixt", "ity"])
    several = _n_runs(df) > 1
    handles = []
    for layer in [lay for lay in colors if lay in set(agg["layer"])]:
        d = agg[agg["layer"] == layer].sort_values("epoch")
        color = colors[layer]
        if several:
            boxes = [Rectangle((r.ixt_lo, r.ity_lo), r.ixt_hi - r.ixt_lo, r.ity_hi - r.ity_lo)
                     for r in d.itertuples()]
            ax.add_collection(PatchCollection(boxes, facecolor=color, edgecolor="none", alpha=0.12,
                                              zorder=1, gid=f"band:{layer}"))
        line, = ax.plot(d["ixt_med"], d["ity_med"], "-", color=color, lw=1.4, alpha=0.9, zorder=2,
                        label=str(layer), gid=f"layer:{layer}")
        handles.append(line)
        ax.scatter(d["ixt_med"], d["ity_med"], c=d["epoch"], cmap=cmap, norm=norm, s=22,
                   edgecolors=color, linewidths=0.6, zorder=3, gid=f"epochs:{layer}")
        e_fit, e_peak = _phase_epochs(phases, layer)
        epochs = d["epoch"].to_numpy(dtype=float)
        for target, marker, size in ((e_fit, _FIT_MARKER, 60), (e_peak, _PEAK_MARKER, 170)):
            i = _nearest(epochs, target)
            if i is not None:
                ax.scatter([d["ixt_med"].iloc[i]], [d["ity_med"].iloc[i]], marker=marker, s=size,
                           facecolor=color, edgecolor="black", linewidths=1.0, zorder=4,
                           gid=f"phase:{layer}")
    ceiling, h_y = _ceilings(df)
    if ceilings and ceiling is not None:
        ax.axvline(ceiling, ls="--", lw=1.0, color="0.45", zorder=0, gid="ceiling:ixt")
        ax.text(ceiling, 0.5, f"$\\log_2 N$ = {ceiling:.2f} ", transform=ax.get_xaxis_transform(),
                rotation=90, va="center", ha="right", fontsize=8, color="0.35")
    if ceilings and h_y is not None:
        ax.axhline(h_y, ls="--", lw=1.0, color="0.45", zorder=0, gid="ceiling:hy")
        ax.text(0.02, h_y, f"H(Y) = {h_y:.3f}", transform=ax.get_yaxis_transform(), va="bottom",
                fontsize=8, color="0.35")
    ax.set_xlabel("I(X;T) [bits]")
    ax.set_ylabel("I(T;Y) [bits]")
    ax.grid(True, lw=0.4, alpha=0.4)
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]), right=max(ax.get_xlim()[1], (ceiling or 0) * 1.04))
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=max(ax.get_ylim()[1], (h_y or 0) * 1.06))
    return handles


def plot_information_plane(df: pd.DataFrame, ax=None, phases: pd.DataFrame | None = None, *,
                           cmap: str = "viridis", title: str | None = None, path=None) -> Figure:
    """Information plane in the style of Shwartz-Ziv & Tishby (2017): I(T;Y) against I(X;T).

    One line per layer (layer colours by depth), the points along it coloured by epoch (colorbar,
    symmetric-log scale), ``log2 N`` and ``H(Y)`` as dashed ceilings, optional ``e_fit``/``e_peak``
    markers from ``phases``.  ``df`` must hold one model and one estimator configuration; with
    several runs (seeds) the median trajectory and interquartile boxes are drawn.

    Parameters
    ----------
    df : DataFrame
        Rows of :func:`ibtoolkit.information_plane` (columns ``layer``, ``epoch``, ``ixt``, ``ity``;
        ``ixt_ceiling``, ``h_y``, ``run``, ``status`` used when present).
    ax : matplotlib Axes, optional
        Draw into this Axes (its figure is returned and gets the colorbar); default a new figure.
    phases : DataFrame, optional
        Columns ``layer``, ``e_fit``, ``e_peak``.
    title, cmap, path
        Figure title (default: model, precision/variant, dataset, estimator label), epoch colormap,
        and ``path`` (without suffix) to save PNG and PDF.
    """
    df = _ok_rows(df, ["layer", "epoch", "ixt", "ity"])
    info = _single(df, ["dataset", "model", "precision", "variant"], "models")
    info.update(_single(df, ["estimator", "estimator_label"], "estimator configurations"))
    phases = _check_phases(phases)
    if ax is None:
        fig, axes = _new_figure(width=6.4, height=5.0)
        ax = axes[0, 0]
    else:
        fig = ax.figure
    norm = _epoch_norm(df["epoch"])
    colors = layer_colors(_layer_order(df))
    handles = _draw_plane(ax, df, phases, cmap, norm, colors)
    if phases is not None:
        handles = _phase_legend(ax, handles)
    ax.legend(handles=handles, title="layer", fontsize=8, title_fontsize=8, loc="lower right", framealpha=0.85)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="epoch (symlog)")
    ax.set_title(title if title is not None else _wrap("Information plane\n" + _describe(info, _n_runs(df)), 64),
                 fontsize=10)
    return _finish(fig, path)


def plot_estimator_grid(df: pd.DataFrame, phases: pd.DataFrame | None = None, *, cmap: str = "viridis",
                        title: str | None = None, path=None) -> Figure:
    """One information plane per estimator configuration of one run (or seed group), side by side.

    Panels share both axes and one epoch colorbar, so the estimators can be compared point by
    point.  ``phases`` may carry an ``estimator`` column (registry name) or ``estimator_label``
    column to give each panel its own markers.
    """
    df = _ok_rows(df, ["layer", "epoch", "ixt", "ity", "estimator_label"])
    info = _single(df, ["dataset", "model", "precision", "variant"], "models")
    phases = _check_phases(phases)
    labels = df["estimator_label"].drop_duplicates().tolist()
    fig, axes = _new_figure(ncols=len(labels), width=4.3, height=4.4, sharex=True, sharey=True)
    norm = _epoch_norm(df["epoch"])
    colors = layer_colors(_layer_order(df))
    for ax, label in zip(axes[0], labels):
        part = df[df["estimator_label"] == label]
        ph = phases
        if phases is not None:
            if "estimator_label" in phases.columns:
                ph = phases[phases["estimator_label"] == label]
            elif "estimator" in phases.columns:
                ph = phases[phases["estimator"] == part["estimator"].iloc[0]]
        handles = _draw_plane(ax, part, ph, cmap, norm, colors)
        ax.set_title(_wrap(str(label), 44), fontsize=9)
        if ax is not axes[0, 0]:
            ax.set_ylabel("")
    if phases is not None:
        handles = _phase_legend(axes[0, 0], handles)
    axes[0, 0].legend(handles=handles, title="layer", fontsize=7, title_fontsize=7, loc="lower right",
                      framealpha=0.85)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), label="epoch (symlog)", shrink=0.9)
    info.pop("estimator_label", None)
    fig.suptitle(title if title is not None else _wrap("Information plane per estimator · "
                                                       + _describe(info, _n_runs(df)), 40 * len(labels)), fontsize=11)
    return _finish(fig, path)


# ------------------------------------------------------------------------------------------------
# against epochs
# ------------------------------------------------------------------------------------------------
def _epoch_axis(ax):
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch (symlog: linear on [0, 1], log above)")
    ax.grid(True, which="major", lw=0.4, alpha=0.4)


def plot_mi_vs_epoch(df: pd.DataFrame, phases: pd.DataFrame | None = None, *, title: str | None = None,
                     path=None) -> Figure:
    """I(X;T) (left) and I(T;Y) (right) against epoch, one line per layer.

    The epoch axis is ``symlog`` with linear threshold 1 (epoch 0, before training, sits at the
    origin; epochs >= 1 are on a log scale).  Several seeds: median line and interquartile band.
    Ceilings ``log2 N`` and ``H(Y)`` dashed; ◆ ``e_fit`` and ★ ``e_peak`` from ``phases`` on
    both panels.
    """
    df = _ok_rows(df, ["layer", "epoch", "ixt", "ity"])
    info = _single(df, ["dataset", "model", "precision", "variant"], "models")
    info.update(_single(df, ["estimator", "estimator_label"], "estimator configurations"))
    phases = _check_phases(phases)
    fig, axes = _new_figure(ncols=2, width=5.2, height=4.0, sharex=True)
    agg = _quantiles(df, ["layer", "epoch"], ["ixt", "ity"])
    colors = layer_colors(_layer_order(df))
    several = _n_runs(df) > 1
    ceiling, h_y = _ceilings(df)
    for ax, key, ylabel, ceil, ceil_label in ((axes[0, 0], "ixt", "I(X;T) [bits]", ceiling, "$\\log_2 N$"),
                                              (axes[0, 1], "ity", "I(T;Y) [bits]", h_y, "H(Y)")):
        for layer, color in colors.items():
            d = agg[agg["layer"] == layer].sort_values("epoch")
            if d.empty:
                continue
            if several:
                ax.fill_between(d["epoch"], d[f"{key}_lo"], d[f"{key}_hi"], color=color, alpha=0.18, lw=0,
                                gid=f"band:{layer}")
            ax.plot(d["epoch"], d[f"{key}_med"], "-", color=color, lw=1.5, label=str(layer), gid=f"layer:{layer}")
            e_fit, e_peak = _phase_epochs(phases, layer)
            epochs = d["epoch"].to_numpy(dtype=float)
            for target, marker, size in ((e_fit, _FIT_MARKER, 6), (e_peak, _PEAK_MARKER, 11)):
                i = _nearest(epochs, target)
                if i is not None:
                    ax.plot([epochs[i]], [d[f"{key}_med"].iloc[i]], ls="none", marker=marker, ms=size,
                            mfc=color, mec="black", mew=0.9, zorder=4, gid=f"phase:{layer}")
        if ceil is not None:
            ax.axhline(ceil, ls="--", lw=1.0, color="0.45", gid=f"ceiling:{key}")
            ax.text(0.01, ceil, f"{ceil_label} = {ceil:.3g}", transform=ax.get_yaxis_transform(),
                    va="bottom", fontsize=8, color="0.35")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=max(ax.get_ylim()[1], (ceil or 0) * 1.06))
        _epoch_axis(ax)
    handles = [Line2D([], [], color=c, lw=1.5, label=str(lay)) for lay, c in colors.items()]
    if phases is not None:
        handles = _phase_legend(axes[0, 1], handles)
    axes[0, 1].legend(handles=handles, title="layer", fontsize=8, title_fontsize=8, loc="lower right",
                      framealpha=0.85)
    fig.suptitle(title if title is not None else _wrap("Mutual information over training · "
                                                       + _describe(info, _n_runs(df)), 120), fontsize=10)
    return _finish(fig, path)


def _metric_pairs(columns) -> list[str]:
    """Base metric names present in the table: those with a ``val_`` twin, or loss/accuracy alone."""
    cols = set(columns)
    bases = [c[4:] for c in columns if c.startswith("val_") and c[4:] in cols]
    for name in ("loss", "accuracy"):
        if name in cols and name not in bases:
            bases.append(name)
    order = {"loss": 0, "accuracy": 1}
    return sorted(dict.fromkeys(bases), key=lambda b: (order.get(b, 2), b))


def plot_metrics(df: pd.DataFrame, *, metrics: Sequence[str] | None = None, title: str | None = None,
                 path=None) -> Figure:
    """Training (solid) and validation (dashed) curves of the Keras metrics stored with each epoch.

    One panel per metric (default: every metric with a ``val_`` twin, loss first, then accuracy);
    the metric columns repeat on every (estimator, layer) row, so rows are first reduced to one
    per (run, epoch).  Several runs: median and interquartile band.  Epoch axis ``symlog`` as in
    :func:`plot_mi_vs_epoch`.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    bases = list(metrics) if metrics is not None else _metric_pairs(df.columns)
    if not bases:
        raise ValueError(f"no metric columns (e.g. loss, accuracy, val_loss, val_accuracy) in the table; "
                         f"it has {list(df.columns)}")
    missing = [b for b in bases if b not in df.columns and f"val_{b}" not in df.columns]
    if missing:
        raise ValueError(f"metric(s) {missing} are not columns of the table")
    if "epoch" not in df.columns:
        raise ValueError("the table lacks column 'epoch'")
    info = _single(df, ["dataset", "model", "precision", "variant"], "models")
    keys = ["run", "epoch"] if "run" in df.columns else ["epoch"]
    per_epoch = df.drop_duplicates(keys)
    fig, axes = _new_figure(ncols=len(bases), width=4.6, height=3.6, sharex=True)
    cols = [c for b in bases for c in (b, f"val_{b}") if c in per_epoch.columns]
    agg = _quantiles(per_epoch, ["epoch"], cols)
    several = _n_runs(per_epoch) > 1
    for ax, base in zip(axes[0], bases):
        for col, ls, color, label in ((base, "-", "#1f77b4", "train"), (f"val_{base}", "--", "#ff7f0e", "validation")):
            if col not in per_epoch.columns or agg[f"{col}_med"].isna().all():
                continue
            d = agg.dropna(subset=[f"{col}_med"])
            if several:
                ax.fill_between(d["epoch"], d[f"{col}_lo"], d[f"{col}_hi"], color=color, alpha=0.18, lw=0)
            ax.plot(d["epoch"], d[f"{col}_med"], ls=ls, color=color, lw=1.5, label=label, gid=f"metric:{col}")
        ax.set_ylabel(base.replace("_", " "))
        ax.set_title(base.replace("_", " "), fontsize=10)
        _epoch_axis(ax)
        ax.legend(fontsize=8)
    fig.suptitle(title if title is not None else _wrap("Training curves · " + _describe(info, _n_runs(per_epoch)),
                                                       50 * len(bases)), fontsize=10)
    return _finish(fig, path)


# ------------------------------------------------------------------------------------------------
# phase analysis
# ------------------------------------------------------------------------------------------------
def plot_overlap(phase_table: pd.DataFrame, *, title: str | None = None, path=None) -> Figure:
    """Overlap (simultaneity index) per layer, DNN vs BNN, one panel per estimator.

    The overlap is the fraction of a layer's total compression already done at ``e_fit``
    (:mod:`ibtoolkit.phases`): near 0 = separate phases (fit first, compress later, as reported
    for DNNs), near 1 = simultaneous (as claimed for BNNs).  Points are medians over seeds, error
    bars the intervals ``[overlap_lo, overlap_hi]``; one colour per model group
    (``precision``/``variant``).  Layers with no compression (NaN overlap) are listed in the x-axis
    label instead of drawn.

    Required columns: ``layer``, ``estimator``, ``overlap`` (the median, as in
    :func:`ibtoolkit.phases.phase_table`; ``overlap_median`` is accepted too), ``overlap_lo``,
    ``overlap_hi``, and ``precision`` and/or ``variant`` (``dataset``/``model`` join the group
    label when the table holds several).
    """
    if not isinstance(phase_table, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame (the phase table), got {type(phase_table).__name__}")
    median_col = "overlap_median" if "overlap_median" in phase_table.columns else "overlap"
    needed = ["layer", "estimator", median_col, "overlap_lo", "overlap_hi"]
    missing = [c for c in needed if c not in phase_table.columns]
    if missing:
        raise ValueError(f"the phase table lacks column(s) {missing}; it has {list(phase_table.columns)}")
    group_cols = [c for c in ("precision", "variant") if c in phase_table.columns]
    if not group_cols:
        raise ValueError("the phase table needs a 'precision' and/or 'variant' column to tell DNN from BNN")
    if phase_table.empty:
        raise ValueError("nothing to plot: the phase table is empty")
    varies = [c for c in ("dataset", "model") if c in phase_table.columns
              and phase_table[c].nunique(dropna=False) > 1]
    label_cols = varies if "model" in varies else varies + group_cols  # model names already say it
    pt = phase_table.copy()
    pt["_group"] = pt[label_cols].astype(str).agg(" / ".join, axis=1)
    dup = pt.duplicated(["_group", "layer", "estimator"])
    if dup.any():
        raise ValueError(f"the phase table has {int(dup.sum())} repeated (group, layer, estimator) rows; give "
                         f"one row per group (the median over seeds, as ibtoolkit.phases.phase_table does)")
    estimators = pt["estimator"].drop_duplicates().tolist()
    layers = _layer_order(pt)
    groups = pt["_group"].drop_duplicates().tolist()
    palette = matplotlib.colormaps["tab10"]
    colors = {}
    for i, g in enumerate(groups):
        prec = str(pt.loc[pt["_group"] == g, group_cols[0]].iloc[0]) if group_cols[0] == "precision" else ""
        colors[g] = palette(i % palette.N) if len(groups) > 2 or prec not in _GROUP_COLORS else _GROUP_COLORS[prec]
    ncols = min(2, len(estimators))  # a grid of at most two columns stays readable on a page
    nrows = -(-len(estimators) // ncols)
    fig, axes = _new_figure(ncols=ncols, nrows=nrows, width=max(3.6, 0.6 * len(layers) + 1.8), height=3.4,
                            sharey=True)
    for ax in axes.ravel()[len(estimators):]:
        ax.remove()
    width = 0.8 / max(len(groups), 1)
    for ax, est in zip(axes.ravel(), estimators):
        sub = pt[pt["estimator"] == est]
        skipped = []
        for j, g in enumerate(groups):
            d = sub[sub["_group"] == g].set_index("layer").reindex(layers)
            xpos = np.arange(len(layers)) - 0.4 + width * (j + 0.5)
            med = pd.to_numeric(d[median_col], errors="coerce").to_numpy(dtype=float)
            lo = pd.to_numeric(d["overlap_lo"], errors="coerce").to_numpy(dtype=float)
            hi = pd.to_numeric(d["overlap_hi"], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(med)
            missing = [str(layers[i]) for i in np.flatnonzero(~ok) if layers[i] in set(sub["layer"])
                       and (sub["_group"] == g).any()]
            if missing:
                skipped.append(f"{g}: {', '.join(missing)}")
            if not ok.any():
                continue
            yerr = np.vstack([np.where(np.isfinite(lo), med - lo, 0.0), np.where(np.isfinite(hi), hi - med, 0.0)])
            ax.errorbar(xpos[ok], med[ok], yerr=np.clip(yerr[:, ok], 0, None), fmt="o", ms=6, capsize=3,
                        color=colors[g], label=g, gid=f"overlap:{g}")
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.axhline(1.0, color="0.6", lw=0.6, ls=":")
        ax.set_xticks(np.arange(len(layers)), [str(lay) for lay in layers], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_title(str(est), fontsize=10)
        ax.set_xlabel("layer")
        ax.grid(True, axis="y", lw=0.4, alpha=0.4)
        if skipped:  # in the axis label, so the note never hides a point
            ax.set_xlabel("layer\n" + _wrap("no compression: " + "; ".join(skipped), 70), fontsize=8)
    for row in axes:
        row[0].set_ylabel("overlap = compression\ndone by $e_{fit}$")
    low, high = axes[0, 0].get_ylim()
    axes[0, 0].set_ylim(min(low, -0.1), max(high, 1.1))
    handles, labels = [], []
    for ax in axes.ravel()[:len(estimators)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:  # below the panels, so it never hides a point
        fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=min(len(labels), 4),
                   framealpha=0.85)
    fig.suptitle(title if title is not None else _wrap("Simultaneity of fitting and compression (0 = separate, "
                 "1 = simultaneous; median and interval over seeds)", 60 * ncols), fontsize=10)
    return _finish(fig, path)
