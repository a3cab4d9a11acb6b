"""The study's contrast figure: every seed's D beside the outcome of each layer of each claim pair.

One panel per claim pair of the families drawn (default families 1 and 2: the 8-bit DNN against each
BNN arm; the exploratory family 5 in a figure of its own), the same estimator on both arms, hidden
layers along x. Each seed is a point at its statistic D (bits I(X;T)
sits below its running peak while I(T;Y) still rises; :mod:`ibtoolkit.phases.statistic`), the DNN's
seeds left of the layer, the BNN's right; filled for a determined trajectory, hollow for an undetermined
one (the pair's ``all:`` contrast uses those too); a bar marks each side's median over determined seeds.
The layer's outcome under the decision rule (:mod:`experiments.study_verdict`) is written above it.
The claim predicts BNN points above DNN points (D > 0 only when compression overlaps fitting). A pair
that belongs to families 1 and 2 is drawn once, with its family-1 outcome.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd

from experiments.study_presets import COARSE_BITS
from experiments.study_verdict import _DETERMINED, coarse_family

__all__ = ["plot_claim_contrasts", "CONTRAST_FAMILIES", "EXPLORATORY_FAMILIES"]

#: Families whose pairs measure both arms with the same estimator (protocol section 4).
CONTRAST_FAMILIES = ("1 primary", "1 primary (wide)", "2 quantizers")
#: The exploratory coarse-DNN families (`study-coarse`), drawn in a figure of their own.
EXPLORATORY_FAMILIES = tuple(coarse_family(b) for b in COARSE_BITS)
_SIDE = {"dnn": ("#1f77b4", -0.17), "bnn": ("#d62728", 0.17)}
_SHORT = {"holds": "holds", "contradicted": "contra.", "undetermined": "undet.",
          "depends on the undetermined trajectories": "depends"}


def _pairs(outcomes: pd.DataFrame, dataset: str, families) -> pd.DataFrame:
    rows = outcomes[(outcomes["dataset"] == dataset) & outcomes["family"].isin(families)]
    return rows.drop_duplicates(["dnn", "bnn", "estimator_dnn", "estimator_bnn", "layer_index"])


def plot_claim_contrasts(traj: pd.DataFrame, outcomes: pd.DataFrame, dataset: str, path=None, *,
                         families=CONTRAST_FAMILIES, ncols: int = 4):
    """Draw the contrast figure of ``dataset`` (module docstring); ``path`` without suffix writes PNG.

    ``traj``: :func:`experiments.study_verdict.study_trajectories`; ``outcomes``:
    :func:`experiments.study_verdict.pair_outcomes`; ``families``: whose pairs to draw (default
    families 1-2). Returns the figure, or None when the dataset has no pair of those families."""
    from ibtoolkit.plotting.common import _new_figure, save_figure

    rows = _pairs(outcomes, dataset, families) if len(outcomes) else outcomes
    if rows is None or rows.empty:
        return None
    panels = list(rows.groupby(["dnn", "bnn", "estimator_dnn", "estimator_bnn"], sort=False))
    seeds = dict(list(traj[traj["dataset"] == dataset].groupby(["model", "estimator", "layer_index"])))
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _new_figure(ncols, nrows, width=3.6, height=3.1, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, ((dnn, bnn, est_a, est_b), g) in zip(axes.flat, panels):
        g = g.sort_values("layer_index")
        for x, row in enumerate(g.itertuples()):
            for side, model, est in (("dnn", dnn, est_a), ("bnn", bnn, est_b)):
                color, dx = _SIDE[side]
                t = seeds.get((model, est, row.layer_index), traj.iloc[:0])
                d = pd.to_numeric(t["compression_during_fit"], errors="coerce").to_numpy(dtype=float)
                det = t["verdict"].isin(_DETERMINED).to_numpy()
                jitter = np.linspace(-0.06, 0.06, max(len(d), 1))[: len(d)]
                ax.scatter(x + dx + jitter[det], d[det], s=14, color=color, zorder=3)
                ax.scatter(x + dx + jitter[~det], d[~det], s=14, facecolors="none", edgecolors=color,
                           linewidths=0.8, zorder=3)
                if np.isfinite(d[det]).any():
                    ax.hlines(np.nanmedian(d[det]), x + dx - 0.12, x + dx + 0.12, color="k", lw=1.5, zorder=4)
            ax.text(x, 1.0, _SHORT.get(row.outcome, row.outcome), transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=7.5,
                    fontweight="bold" if row.outcome in ("holds", "contradicted") else "normal")
        ax.set_xticks(range(len(g)), [str(v).replace("hidden_", "h") for v in g["layer"]])
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_title(f"{bnn}\nvs {dnn} [{est_b if est_a == est_b else est_a + ' | ' + est_b}]", fontsize=8, pad=14)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("D (bits)")
    fig.suptitle(f"{dataset}: D per seed, DNN (blue, left) and BNN (red, right); hollow = undetermined, "
                 f"bar = median of the determined seeds; the layer's outcome above", fontsize=9)
    if path is not None:
        save_figure(fig, pathlib.Path(path), formats=("png",))
    return fig
