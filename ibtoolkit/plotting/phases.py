"""Figures of the phase analysis (:mod:`ibtoolkit.phases`)."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .common import _GROUP_COLORS, _finish, _layer_order, _new_figure, _wrap

__all__ = ["plot_overlap"]


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
