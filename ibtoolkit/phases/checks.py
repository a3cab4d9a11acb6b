"""Checks beside the verdicts: estimator agreement, depth monotonicity (a DPI bound only for exact), saturation.

* :func:`estimator_agreement` compares estimators run on the same stores.  Two estimators that
  coincide *by construction* on a layer are a copy, not a second measurement: on a binary (±1)
  layer ``exact`` and ``binning`` (±1 fall into different bins) compute the same plug-in
  quantities, and ``kde`` with noise variance σ² equals them up to N·exp(−2/σ²) (the kernel
  between the nearest distinct codes, squared distance 4, is exp(−4/2σ²); σ² = 0.1: e^-20).
  Such trajectories are counted in ``n_by_construction`` and left out of ``verdict_agreement``.
* :func:`dpi_violations`: I(X;T_{l+1}) ≤ I(X;T_l) is the data-processing inequality only for a
  deterministic code measured exactly (``exact`` on ±1 or quantized layers: T_{l+1} is a function
  of T_l).  ``kde``/``ksg`` add independent noise to each layer and ``binning`` re-bins each
  layer, so for them the same comparison is a depth-monotonicity check, not a bound; the
  ``check`` column says which.
* :func:`saturation`: the epochs behind the ``saturated`` gate (I(X;T) within ``saturation_tol`` of its
  ceiling log2 N, or codes mostly singletons), counted per layer.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from .gating import GATE_DEFAULTS, check_gates, saturated_epochs
from .table import _require, trajectory_phases, usable_mask

__all__ = ["AgreementResult", "estimator_agreement", "dpi_violations", "saturation", "copies_exact"]

#: A kde whose kernel between the nearest distinct ±1 codes, times N, is below this is a copy of exact.
KDE_COPY_TOL = 1e-3


def _usable(df) -> pd.DataFrame:
    return df.loc[usable_mask(df)]


def copies_exact(estimator: str, params, binary: bool, n_samples: int) -> bool:
    """True when ``estimator`` with ``params`` computes exact's plug-in quantities on a ±1 layer by
    construction (module docstring); always False on a non-binary layer."""
    if not binary:
        return False
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    params = params if isinstance(params, dict) else {}
    if estimator == "exact":
        return not params.get("miller_madow", False)
    if estimator == "binning":
        return not params.get("miller_madow", False) and _binning_separates_pm1(params)
    if estimator == "kde":
        var = float(params.get("noise_variance", 0.1))
        return n_samples * math.exp(-2.0 / var) < KDE_COPY_TOL
    return False


def _binning_separates_pm1(params: dict) -> bool:
    """Whether binning with ``params`` puts -1 and +1 into different bins (then it is exact on ±1 codes).

    ``bin_size`` s: always (⌊−1/s⌋ = −1 ≠ 0 = ⌊1/s⌋); a fitted ``"data"`` range ([−1, 1] on a layer
    holding both codes): when n_bins ≥ 2; a fixed range: when the bin indices of −1 and +1 differ.
    """
    if params.get("bin_size") is not None:
        return True
    n_bins = int(params.get("n_bins", 30))
    value_range = params.get("value_range", (-1.0, 1.0))
    if isinstance(value_range, str):
        return n_bins >= 2
    lo, hi = (float(v) for v in value_range)

    def index(v: float) -> int:
        return min(max(math.floor((v - lo) * n_bins / (hi - lo)), 0), n_bins - 1)

    return index(-1.0) != index(1.0)


@dataclass
class AgreementResult:
    """What :func:`estimator_agreement` returns.

    ``verdicts``: one row per (run, layer), one column per estimator (its verdict) and ``all_agree``.
    ``pairs``: one row per estimator pair: ``n_trajectories`` compared, ``n_by_construction`` (of
    those, trajectories where both estimators coincide with exact by construction, see
    :func:`copies_exact`), ``verdict_agreement`` (share of equal verdicts over the *other*
    trajectories, NaN when none), ``spearman_ixt`` / ``spearman_ity`` (median over trajectories of Spearman's rank
    correlation over the shared epochs) and ``n_constant`` (trajectories where a curve is constant,
    so the rank correlation is undefined and left out).
    ``vs_exact``: for binary layers, every estimator against ``exact`` (the truth there):
    ``n_points`` matched (run, layer, epoch) rows, ``mae_ixt``/``mae_ity`` (mean absolute difference,
    bits), ``max_abs_ixt``, ``verdict_agreement`` with exact's verdicts.
    """

    verdicts: pd.DataFrame
    pairs: pd.DataFrame
    vs_exact: pd.DataFrame


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def estimator_agreement(df: pd.DataFrame, estimator_col: str = "estimator", exact: str = "exact",
                        **phase_kwargs) -> AgreementResult:
    """Compare estimators run on the same stores (runs): verdicts, rank correlations, error vs exact.

    Trajectories are matched on (``run``, ``layer``) and their common epochs.  ``estimator_col``
    names the estimator (use ``"estimator_label"`` when one estimator appears with several parameter
    sets); ``exact`` is the reference estimator for binary layers (rows with ``binary`` true).
    See :class:`AgreementResult` for the columns.
    """
    _require(df, ["run", "layer", "epoch", "ixt", "ity", estimator_col], "estimator_agreement")
    per = trajectory_phases(df, by=("run", "layer", estimator_col), grid={}, **phase_kwargs)
    copy_of = _copy_map(df, estimator_col)
    names = sorted(per[estimator_col].dropna().unique().tolist()) if len(per) else []
    verdicts = per.pivot_table(index=["run", "layer"], columns=estimator_col, values="verdict",
                               aggfunc="first").reset_index() if len(per) else pd.DataFrame(columns=["run", "layer"])
    verdicts.columns.name = None
    if names:
        vals = verdicts[names]
        verdicts["all_agree"] = vals.apply(lambda r: r.dropna().nunique() <= 1, axis=1)
    else:
        verdicts["all_agree"] = pd.Series(dtype=bool)

    data = _usable(df)
    curves = {k: g.sort_values("epoch") for k, g in data.groupby(["run", "layer", estimator_col], sort=False)}
    pair_rows = []
    for a, b in combinations(names, 2):
        both = verdicts[["run", "layer", a, b]].dropna()
        copies = np.array([copy_of.get((r, lay, a), False) and copy_of.get((r, lay, b), False)
                           for r, lay in zip(both["run"], both["layer"])], dtype=bool)
        independent = both[~copies] if len(both) else both
        rho_x, rho_y, n_const = [], [], 0
        for run, layer in zip(both["run"], both["layer"]):
            m = curves[(run, layer, a)].merge(curves[(run, layer, b)], on="epoch", suffixes=("_a", "_b"))
            rx = _spearman(m["ixt_a"].to_numpy(float), m["ixt_b"].to_numpy(float))
            ry = _spearman(m["ity_a"].to_numpy(float), m["ity_b"].to_numpy(float))
            n_const += int(math.isnan(rx) or math.isnan(ry))
            rho_x.append(rx)
            rho_y.append(ry)
        pair_rows.append({
            "estimator_a": a, "estimator_b": b, "n_trajectories": len(both), "n_by_construction": int(copies.sum()),
            "verdict_agreement": (float((independent[a] == independent[b]).mean()) if len(independent)
                                  else math.nan),
            "spearman_ixt": float(np.nanmedian(rho_x)) if np.isfinite(rho_x).any() else math.nan,
            "spearman_ity": float(np.nanmedian(rho_y)) if np.isfinite(rho_y).any() else math.nan,
            "n_constant": n_const})
    pairs = pd.DataFrame(pair_rows, columns=["estimator_a", "estimator_b", "n_trajectories", "n_by_construction",
                                             "verdict_agreement",
                                             "spearman_ixt", "spearman_ity", "n_constant"])

    ex_cols = ["estimator", "n_points", "mae_ixt", "mae_ity", "max_abs_ixt", "verdict_agreement"]
    ex_rows = []
    if "binary" in data.columns and exact in names:
        binary = data[data["binary"].astype(bool)]
        ref = binary[binary[estimator_col] == exact][["run", "layer", "epoch", "ixt", "ity"]]
        for name in names:
            if name == exact:
                continue
            m = binary[binary[estimator_col] == name][["run", "layer", "epoch", "ixt", "ity"]].merge(
                ref, on=["run", "layer", "epoch"], suffixes=("", "_exact"))
            if m.empty:
                continue
            dx = np.abs(m["ixt"].to_numpy(float) - m["ixt_exact"].to_numpy(float))
            dy = np.abs(m["ity"].to_numpy(float) - m["ity_exact"].to_numpy(float))
            layers = m[["run", "layer"]].drop_duplicates()
            v = verdicts.merge(layers, on=["run", "layer"])[[name, exact]].dropna()
            ex_rows.append({"estimator": name, "n_points": len(m), "mae_ixt": float(dx.mean()),
                            "mae_ity": float(dy.mean()), "max_abs_ixt": float(dx.max()),
                            "verdict_agreement": float((v[name] == v[exact]).mean()) if len(v) else math.nan})
    return AgreementResult(verdicts=verdicts, pairs=pairs, vs_exact=pd.DataFrame(ex_rows, columns=ex_cols))


# ------------------------------------------------------------------------------------- sanity checks
def _copy_map(df, estimator_col) -> dict:
    """(run, layer, estimator) -> whether that estimator copies exact on that layer by construction."""
    if "binary" not in df.columns:
        return {}
    cols = ["run", "layer", estimator_col, "binary"] + [c for c in ("estimator", "estimator_params", "n_samples")
                                                        if c in df.columns and c != estimator_col]
    first = df[list(dict.fromkeys(cols))].drop_duplicates(["run", "layer", estimator_col])
    out = {}
    for row in first.itertuples(index=False):
        r = row._asdict()
        name = r.get("estimator", r[estimator_col])
        n = int(r["n_samples"]) if "n_samples" in r and pd.notna(r["n_samples"]) else 10 ** 9
        out[(r["run"], r["layer"], r[estimator_col])] = copies_exact(str(name), r.get("estimator_params"),
                                                                     bool(r["binary"]), n)
    return out


def dpi_violations(df: pd.DataFrame, tol: float = 1e-9, estimator_col: str = "estimator", exact: str = "exact",
                   detail: bool = False) -> pd.DataFrame:
    """Depth monotonicity I(X;T_{l+1}) ≤ I(X;T_l) for every (run, estimator, epoch): a DPI bound for exact only.

    Each layer's representation is a function of the previous one, so for the true (empirical)
    quantity of a deterministic code, measured by ``exact``, I(X;T) = H(T) cannot grow with depth
    (the data-processing inequality); for noisy (kde, ksg) or re-binned (binning) layers the
    comparison is not a bound, and its violations do not measure bias.  Layers are ordered by ``layer_index``; each
    consecutive pair of usable layers (failed rows dropped) is one check, a violation when
    I(X;T_{l+1}) > I(X;T_l) + ``tol`` bits.  For ``exact`` a violation is a bug (flagged ``is_bug``
    and warned about); for other estimators it is counted.

    Returns one row per (run, estimator): ``check`` ("DPI bound" for ``exact``, else "depth
    monotonicity (not a bound)"), ``n_checks``, ``n_violations``, ``max_excess`` (bits, 0 when
    none), ``example`` (the worst violation in words, "" when none), ``is_bug``.  With ``detail=True``
    returns one row per violation instead (run, estimator, epoch, layer_from, layer_to, ixt_from,
    ixt_to, excess).
    """
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    _require(df, ["run", estimator_col, "epoch", "layer", "layer_index", "ixt"], "dpi_violations")
    data = _usable(df.drop(columns=["ity"], errors="ignore"))
    keys = ["run", estimator_col, "epoch"]
    d = data.sort_values(keys + ["layer_index"], kind="stable").reset_index(drop=True)
    dup = d.duplicated(keys + ["layer_index"])
    if dup.any():
        raise ValueError(f"dpi_violations: {int(dup.sum())} duplicate (run, {estimator_col}, epoch, layer_index) "
                         f"rows; use estimator_col='estimator_label' to tell parameter sets apart")
    g = d.groupby(keys, sort=False)
    prev_ixt = g["ixt"].shift(1)
    prev_layer = g["layer"].shift(1)
    checked = prev_ixt.notna()
    excess = d["ixt"].astype(float) - prev_ixt.astype(float)
    viol = checked & (excess > tol)
    detail_df = pd.DataFrame({"run": d["run"], estimator_col: d[estimator_col], "epoch": d["epoch"],
                              "layer_from": prev_layer, "layer_to": d["layer"], "ixt_from": prev_ixt,
                              "ixt_to": d["ixt"], "excess": excess})[viol.to_numpy()].reset_index(drop=True)
    if detail:
        return detail_df
    rows = []
    for (run, est), grp in d.assign(_checked=checked, _viol=viol).groupby(["run", estimator_col], sort=True):
        v = detail_df[(detail_df["run"] == run) & (detail_df[estimator_col] == est)]
        n_v = int(grp["_viol"].sum())
        example = ""
        if n_v:
            w = v.loc[v["excess"].idxmax()]
            example = (f"epoch {w['epoch']}: I(X;{w['layer_to']}) = {w['ixt_to']:.4f} > "
                       f"I(X;{w['layer_from']}) = {w['ixt_from']:.4f} bits")
        rows.append({"run": run, estimator_col: est,
                     "check": "DPI bound" if est == exact else "depth monotonicity (not a bound)",
                     "n_checks": int(grp["_checked"].sum()), "n_violations": n_v,
                     "max_excess": float(v["excess"].max()) if n_v else 0.0, "example": example,
                     "is_bug": bool(est == exact and n_v > 0)})
    out = pd.DataFrame(rows, columns=["run", estimator_col, "check", "n_checks", "n_violations", "max_excess", "example",
                                      "is_bug"])
    if out["is_bug"].any():
        bad = out[out["is_bug"]]
        warnings.warn(f"the {exact!r} estimator violates the data-processing inequality in run(s) "
                      f"{bad['run'].tolist()} ({bad['example'].iloc[0]}): this is a bug", RuntimeWarning,
                      stacklevel=2)
    return out


def saturation(df: pd.DataFrame, tol: float = GATE_DEFAULTS["saturation_tol"], estimator_col: str = "estimator",
               detail: bool = False, *, singleton_fraction: float = GATE_DEFAULTS["singleton_fraction"],
               max_saturated_fraction: float = GATE_DEFAULTS["max_saturated_fraction"]) -> pd.DataFrame:
    """Where I(X;T) cannot show compression: the epochs behind the ``saturated`` gate, counted.

    One definition with the validity gate (:func:`~ibtoolkit.phases.gating.saturated_epochs`): an
    epoch (row) is saturated when I(X;T) ≥ ``ixt_ceiling`` − ``tol`` bits (log2 N, default
    0.05 bit, the gate's ``saturation_tol``) or its codes are mostly singletons (``n_states`` ≥
    ``singleton_fraction`` × ``n_samples``, when the table has those columns).  Returns one row per
    (run, estimator, layer): ``n_epochs``, ``n_saturated``, ``fraction_saturated``,
    ``first_saturated`` and ``last_saturated`` epochs (NaN when none), ``saturated_at_end`` (the
    last recorded epoch is saturated) and ``saturated`` (``fraction_saturated`` ≥
    ``max_saturated_fraction``: the gate's ``saturated`` condition, which makes the trajectory
    ``undetermined`` unless ``above ceiling`` or ``too few points`` fires first).  With
    ``detail=True`` returns the saturated rows of the table instead.
    """
    if not (isinstance(tol, (int, float, np.number)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0 (bits below the ceiling), got {tol!r}")
    gates = check_gates({**GATE_DEFAULTS, "saturation_tol": tol, "singleton_fraction": singleton_fraction,
                         "max_saturated_fraction": max_saturated_fraction})
    _require(df, ["run", estimator_col, "layer", "epoch", "ixt", "ixt_ceiling"], "saturation")
    data = _usable(df.drop(columns=["ity"], errors="ignore")).sort_values("epoch", kind="stable")
    def column(name):
        return pd.to_numeric(data[name], errors="coerce").to_numpy(dtype=float) if name in data.columns else None

    sat = saturated_epochs(data["ixt"].to_numpy(dtype=float), column("ixt_ceiling"), column("n_states"),
                           column("n_samples"), saturation_tol=gates["saturation_tol"],
                           singleton_fraction=gates["singleton_fraction"])
    if detail:
        return data[sat].reset_index(drop=True)
    d = data.assign(_sat=sat)
    rows = []
    for (run, est, layer), g in d.groupby(["run", estimator_col, "layer"], sort=True):
        s = g["_sat"].to_numpy()
        ep = g["epoch"].to_numpy()
        rows.append({"run": run, estimator_col: est, "layer": layer, "n_epochs": len(g), "n_saturated": int(s.sum()),
                     "fraction_saturated": float(s.mean()),
                     "first_saturated": float(ep[s][0]) if s.any() else math.nan,
                     "last_saturated": float(ep[s][-1]) if s.any() else math.nan,
                     "saturated_at_end": bool(s[-1]),
                     "saturated": bool(s.mean() >= gates["max_saturated_fraction"])})
    return pd.DataFrame(rows, columns=["run", estimator_col, "layer", "n_epochs", "n_saturated",
                                       "fraction_saturated", "first_saturated", "last_saturated",
                                       "saturated_at_end", "saturated"])
