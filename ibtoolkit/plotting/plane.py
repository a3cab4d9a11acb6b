"""The information plane itself: one trajectory per layer in (I(X;T), I(T;Y)), points coloured by epoch."""
from __future__ import annotations

import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .common import (_FIT_MARKER, _PEAK_MARKER, _ceilings, _check_phases, _describe, _epoch_norm,
                     _finish, _layer_order, _n_runs, _nearest, _new_figure, _ok_rows, _phase_epochs,
                     _phase_legend, _quantiles, _single, _wrap, layer_colors)

__all__ = ["plot_information_plane", "plot_estimator_grid"]


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
