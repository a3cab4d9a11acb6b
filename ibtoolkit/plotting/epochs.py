"""Quantities against epochs: I(X;T) and I(T;Y) per layer, and the Keras metrics of the run."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .common import (_FIT_MARKER, _PEAK_MARKER, _ceilings, _check_phases, _describe, _finish,
                     _layer_order, _n_runs, _nearest, _new_figure, _ok_rows, _phase_epochs,
                     _phase_legend, _quantiles, _single, _wrap, layer_colors)

__all__ = ["plot_mi_vs_epoch", "plot_metrics"]


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
