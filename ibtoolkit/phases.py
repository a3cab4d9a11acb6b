"""Phase analysis of information-plane trajectories: fitting, compression, and whether they overlap.

Shwartz-Ziv & Tishby (2017, "Opening the black box of deep neural networks via information") describe
a *fitting* phase, in which I(T;Y) and I(X;T) grow, followed by a much longer *compression* phase, in
which I(X;T) falls.  Raj, Nayak & Kalyani (2020, "Understanding learning dynamics of binary neural
networks via information bottleneck") report that in BNNs both happen at once.  This module measures
that per layer, from the tidy information-plane table (:func:`ibtoolkit.information_plane`), without
assuming the answer.

Definitions for one layer's trajectory (recorded epochs e_0 < ... < e_{n-1}; every threshold is a
parameter of :func:`analyse_trajectory`, defaults in brackets):

* **Smoothing.**  Both curves are smoothed with a centred running median over ``smoothing`` [5]
  consecutive *recorded* points; the window shrinks symmetrically near the ends, so the first and last
  points are kept as measured.  Recording schedules are log-spaced, so this is a window of roughly
  constant width on the log-epoch axis.  A running median leaves monotone stretches unchanged and
  removes isolated spikes; ``smoothing=1`` switches it off.  Below, Ĩ denotes smoothed values.
* **Fitting.**  With the total rise R = max_i Ĩ(T;Y)_i − Ĩ(T;Y)_0, ``e_fit`` is the first recorded
  epoch with Ĩ(T;Y) ≥ Ĩ(T;Y)_0 + f·R, f = ``fit_fraction`` [0.9].  If R ≤ 0 (no fitting), e_fit = e_0.
* **Compression.**  ``e_peak`` = the (first) epoch of maximal Ĩ(X;T); the compression amount is
  C = Ĩ(X;T)(e_peak) − Ĩ(X;T)(e_{n-1}) bits and its fraction C / Ĩ(X;T)(e_peak).  The layer *does
  not compress* when C < ``min_compression_bits`` [0.1 bit] or C / Ĩ(X;T)(e_peak) <
  ``min_compression_fraction`` [0.05].
* **Overlap** (simultaneity index), the share of the compression already done when fitting ends:
  ρ = clip((Ĩ(X;T)(e_peak) − Ĩ(X;T)(e_fit)) / C, 0, 1) if e_fit > e_peak, else 0 (compression had
  not started).  **Lag** = log10(e_peak + 1) − log10(e_fit + 1): the +1 shift keeps epoch 0 (before
  training) on the log axis; lag > 0 means I(X;T) peaks after fitting is done.
* **Verdict** (in this order): ``"no compression"`` if the layer does not compress; else
  ``"simultaneous"`` if ρ ≥ ``simultaneity_threshold`` [0.5] (at least half of the compression
  happened while the layer was still fitting); else ``"separate"`` (most of the compression comes
  after fitting: "fit first, then compress", which includes every case with e_peak ≥ e_fit).

Across seeds (:func:`phase_table`): per group, the median over seeds of e_fit, e_peak, C, ρ and the lag
with a percentile-bootstrap 95 % interval (seeds resampled with replacement, median of each resample),
the majority verdict, the fraction of seeds giving it (with its bootstrap interval) and the count of
each verdict.  A tie between verdicts is reported as ``"mixed"``.

Sanity checks: :func:`dpi_violations` (data-processing inequality across depth) and
:func:`saturation` (I(X;T) at its ceiling log2 N); :func:`estimator_agreement` compares estimators run
on the same stores.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["PhaseResult", "AgreementResult", "VERDICTS", "analyse_trajectory", "smooth",
           "trajectory_phases", "phase_table", "estimator_agreement", "dpi_violations", "saturation"]

VERDICTS = ("simultaneous", "separate", "no compression")
DEFAULT_GROUP_BY = ("dataset", "model", "precision", "variant", "layer", "estimator")
_METRICS = ("e_fit", "e_peak", "compression", "overlap", "lag")


@dataclass(frozen=True)
class PhaseResult:
    """Phases of one layer's trajectory (see the module docstring for the definitions).

    ``e_fit``/``e_peak`` are recorded epochs and ``i_fit``/``i_peak`` their positions in the
    trajectory; ``compression`` is in bits; ``overlap`` is NaN when the layer does not compress.
    """

    e_fit: float
    e_peak: float
    i_fit: int
    i_peak: int
    compression: float
    compression_fraction: float
    overlap: float
    lag: float
    verdict: str
    ity_rise: float
    ixt_peak: float
    ixt_last: float
    n_points: int

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ one layer
def smooth(values, window: int = 5) -> np.ndarray:
    """Centred running median over ``window`` consecutive points, shrinking symmetrically at the ends.

    Point i uses the half-width r_i = min((window − 1) / 2, i, n − 1 − i), so the end points are
    unchanged.  A monotone sequence is returned unchanged.
    """
    v = np.asarray(values, dtype=float)
    if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise ValueError(f"smoothing window must be an odd positive integer, got {window!r}")
    n = v.size
    half = min((window - 1) // 2, (n - 1) // 2)
    if half == 0:
        return v.copy()
    out = v.copy()
    pos = np.arange(n)
    reach = np.minimum(pos, n - 1 - pos)
    for r in range(1, half + 1):
        windows = np.lib.stride_tricks.sliding_window_view(v, 2 * r + 1)  # centre of row j is point j + r
        med = np.median(windows, axis=1)
        sel = (reach == r) if r < half else (reach >= r)
        out[sel] = med[pos[sel] - r]
    return out


def _check_trajectory(epochs, ixt, ity):
    arrays = []
    for name, a in (("epochs", epochs), ("ixt", ixt), ("ity", ity)):
        arr = np.asarray(a)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
        arr = arr.astype(float)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN or infinite value(s); "
                             f"drop failed epochs first")
        arrays.append(arr)
    e, x, y = arrays
    if not (e.size == x.size == y.size):
        raise ValueError(f"epochs, ixt and ity must have the same length, got {e.size}, {x.size}, {y.size}")
    if e.size < 2:
        raise ValueError(f"a trajectory needs at least 2 recorded epochs, got {e.size}")
    if e.min() < 0:
        raise ValueError(f"epochs must be non-negative, got {e.min()}")
    if np.any(np.diff(e) <= 0):
        raise ValueError("epochs must be strictly increasing (sort the trajectory, no duplicate epochs)")
    return e, x, y


def analyse_trajectory(epochs, ixt, ity, *, fit_fraction: float = 0.9, min_compression_bits: float = 0.1,
                       min_compression_fraction: float = 0.05, simultaneity_threshold: float = 0.5,
                       smoothing: int = 5) -> PhaseResult:
    """Fitting and compression phases of one layer; returns a :class:`PhaseResult`.

    ``epochs`` strictly increasing, ``ixt``/``ity`` in bits, all finite.  Definitions, with formulas,
    in the module docstring: e_fit = first epoch with Ĩ(T;Y) ≥ Ĩ(T;Y)_0 + f·(max Ĩ(T;Y) − Ĩ(T;Y)_0);
    e_peak = argmax Ĩ(X;T); C = Ĩ(X;T)(e_peak) − Ĩ(X;T)(last); overlap ρ = share of C done by e_fit;
    lag = log10(e_peak + 1) − log10(e_fit + 1); verdict "no compression" if C < min_compression_bits
    or C/Ĩ(X;T)(e_peak) < min_compression_fraction, else "simultaneous" if ρ ≥ simultaneity_threshold,
    else "separate".
    """
    if not (0.0 < fit_fraction <= 1.0):
        raise ValueError(f"fit_fraction must lie in (0, 1], got {fit_fraction!r}")
    if not (min_compression_bits >= 0 and math.isfinite(min_compression_bits)):
        raise ValueError(f"min_compression_bits must be a finite number >= 0, got {min_compression_bits!r}")
    if not (0.0 <= min_compression_fraction <= 1.0):
        raise ValueError(f"min_compression_fraction must lie in [0, 1], got {min_compression_fraction!r}")
    if not (0.0 < simultaneity_threshold <= 1.0):
        raise ValueError(f"simultaneity_threshold must lie in (0, 1], got {simultaneity_threshold!r}")
    e, x, y = _check_trajectory(epochs, ixt, ity)
    xs, ys = smooth(x, smoothing), smooth(y, smoothing)

    rise = float(ys.max() - ys[0])
    if rise > 0:
        target = ys[0] + fit_fraction * rise
        i_fit = int(np.argmax(ys >= target - 1e-12 * max(1.0, abs(target))))
    else:
        i_fit = 0
    i_peak = int(np.argmax(xs))
    peak, last = float(xs[i_peak]), float(xs[-1])
    compression = peak - last
    fraction = compression / peak if peak > 0 else 0.0
    compresses = compression >= min_compression_bits and fraction >= min_compression_fraction and compression > 0
    if not compresses:
        overlap, verdict = math.nan, "no compression"
    else:
        done = peak - float(xs[i_fit]) if i_fit > i_peak else 0.0
        overlap = float(np.clip(done / compression, 0.0, 1.0))
        verdict = "simultaneous" if overlap >= simultaneity_threshold else "separate"
    lag = math.log10(e[i_peak] + 1.0) - math.log10(e[i_fit] + 1.0)
    return PhaseResult(e_fit=float(e[i_fit]), e_peak=float(e[i_peak]), i_fit=i_fit, i_peak=i_peak,
                       compression=float(compression), compression_fraction=float(fraction), overlap=overlap,
                       lag=float(lag), verdict=verdict, ity_rise=rise, ixt_peak=peak, ixt_last=last,
                       n_points=int(e.size))


# ------------------------------------------------------------------------------------------ the table
def _require(df, columns, what):
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} expects a pandas DataFrame (the information-plane table), got "
                         f"{type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the table lacks column(s) {missing}; it has {list(df.columns)}")


def _usable(df) -> pd.DataFrame:
    """Rows with status 'ok' (when the column exists) and finite ixt and ity."""
    keep = np.isfinite(pd.to_numeric(df["ixt"], errors="coerce").to_numpy(dtype=float))
    if "ity" in df:
        keep &= np.isfinite(pd.to_numeric(df["ity"], errors="coerce").to_numpy(dtype=float))
    if "status" in df:
        keep &= (df["status"].astype(str) == "ok").to_numpy()
    return df.loc[keep]


def _key_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _replicate_col(df) -> str:
    for col in ("run", "seed"):
        if col in df.columns:
            return col
    raise ValueError("the table needs a 'run' or 'seed' column to tell replicate trajectories apart")


def trajectory_phases(df: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUP_BY, **phase_kwargs) -> pd.DataFrame:
    """One row per trajectory: :func:`analyse_trajectory` on every (``by`` + run) group of the table.

    Rows with ``status != "ok"`` or non-finite I values are dropped first; trajectories left with
    fewer than 2 epochs are skipped.  The replicate column is ``run`` (or ``seed`` without ``run``).
    Raises ``ValueError`` if one trajectory holds an epoch twice (e.g. two parameter sets of one
    estimator: add ``estimator_params`` to ``by``).  Columns: ``by``, the replicate column (and
    ``seed`` when present), then every :class:`PhaseResult` field.
    """
    by = list(by)
    rep = _replicate_col(df)
    _require(df, by + ["epoch", "ixt", "ity"], "trajectory_phases")
    keys = by + ([rep] if rep not in by else [])
    data = _usable(df)
    fields = list(PhaseResult.__dataclass_fields__)
    extra = ["seed"] if ("seed" in df.columns and "seed" not in keys) else []
    data = data.sort_values("epoch", kind="stable")
    epochs_all = data["epoch"].to_numpy(dtype=float)
    ixt_all, ity_all = data["ixt"].to_numpy(dtype=float), data["ity"].to_numpy(dtype=float)
    extra_vals = {col: data[col].to_numpy() for col in extra}
    rows = []
    for key, pos in data.groupby(keys, dropna=False, sort=True).indices.items():
        epochs = epochs_all[pos]  # positions keep the epoch order of the sorted table
        if np.any(np.diff(epochs) == 0):
            raise ValueError(f"trajectory {dict(zip(keys, _key_tuple(key)))} has duplicate epochs; add the "
                             f"column that tells them apart (e.g. 'estimator_params') to the grouping")
        if epochs.size < 2:
            continue
        res = analyse_trajectory(epochs, ixt_all[pos], ity_all[pos], **phase_kwargs)
        row = dict(zip(keys, _key_tuple(key)))
        for col in extra:
            row[col] = extra_vals[col][pos[0]]
        row.update(res.as_dict())
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + extra + fields)


def _bootstrap_median(values: np.ndarray, idx: np.ndarray, level: float) -> tuple[float, float, float]:
    """Median of ``values`` and the percentile-bootstrap interval of the median (NaNs ignored)."""
    if np.isnan(values).all():
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples give NaN, which nanpercentile skips
        boots = np.nanmedian(values[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanpercentile(boots, [100 * alpha, 100 * (1 - alpha)])
    return float(np.nanmedian(values)), float(lo), float(hi)


def phase_table(df: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP_BY, n_boot: int = 1000,
                seed: int = 0, level: float = 0.95, **phase_kwargs) -> pd.DataFrame:
    """Per group: median and bootstrap interval over seeds of the phase quantities, and the verdict.

    For every ``group_by`` group of the tidy table, each replicate (``run``, i.e. one seed) gives one
    :class:`PhaseResult` (``phase_kwargs`` are passed to :func:`analyse_trajectory`).  For m in e_fit,
    e_peak, compression, overlap, lag the columns ``m`` (median over seeds), ``m_lo``, ``m_hi`` hold
    the percentile-bootstrap ``level`` interval of the median: ``n_boot`` resamples of the seeds with
    replacement (``numpy.random.default_rng(seed)``), the median of each, their (1 − level)/2 and
    (1 + level)/2 quantiles.  With one seed the interval is that seed's value.  ``overlap`` ignores
    seeds without compression (NaN).  ``verdict`` is the majority verdict over seeds (``"mixed"`` on
    a tie), ``verdict_fraction`` the share of seeds giving it, with bootstrap interval
    ``verdict_fraction_lo``/``_hi``; ``n_simultaneous``, ``n_separate``, ``n_no_compression`` count
    seeds per verdict.
    """
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    group_by = list(group_by)
    per = trajectory_phases(df, by=group_by, **phase_kwargs)
    rep = _replicate_col(df)
    rng = np.random.default_rng(seed)
    count_cols = ["n_" + v.replace(" ", "_") for v in VERDICTS]
    columns = (group_by + ["n_seeds", "seeds"] + [c for m in _METRICS for c in (m, m + "_lo", m + "_hi")]
               + ["verdict", "verdict_fraction", "verdict_fraction_lo", "verdict_fraction_hi"] + count_cols)
    rows = []
    for key, g in per.groupby(group_by, dropna=False, sort=True):
        n = len(g)
        idx = rng.integers(0, n, size=(n_boot, n))
        row = dict(zip(group_by, _key_tuple(key)))
        row["n_seeds"] = n
        ids = g["seed"] if "seed" in g.columns and g["seed"].notna().all() else g[rep]
        row["seeds"] = ",".join(str(s) for s in ids)
        for m in _METRICS:
            row[m], row[m + "_lo"], row[m + "_hi"] = _bootstrap_median(g[m].to_numpy(dtype=float), idx, level)
        verdicts = g["verdict"].to_numpy()
        counts = {v: int(np.sum(verdicts == v)) for v in VERDICTS}
        best = max(counts.values())
        winners = [v for v in VERDICTS if counts[v] == best]
        row["verdict"] = winners[0] if len(winners) == 1 else "mixed"
        row["verdict_fraction"] = best / n
        shares = np.stack([(verdicts[idx] == v).mean(axis=1) for v in winners])  # (winners, n_boot)
        boot = shares.max(axis=0) if len(winners) > 1 else shares[0]
        lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
        row["verdict_fraction_lo"], row["verdict_fraction_hi"] = float(lo), float(hi)
        for v, c in zip(VERDICTS, count_cols):
            row[c] = counts[v]
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------- cross-estimator
@dataclass
class AgreementResult:
    """What :func:`estimator_agreement` returns.

    ``verdicts``: one row per (run, layer), one column per estimator (its verdict) and ``all_agree``.
    ``pairs``: one row per estimator pair: ``n_trajectories`` compared, ``verdict_agreement`` (share of
    equal verdicts), ``spearman_ixt`` / ``spearman_ity`` (median over trajectories of Spearman's rank
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
    per = trajectory_phases(df, by=("run", "layer", estimator_col), **phase_kwargs)
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
        rho_x, rho_y, n_const = [], [], 0
        for run, layer in zip(both["run"], both["layer"]):
            m = curves[(run, layer, a)].merge(curves[(run, layer, b)], on="epoch", suffixes=("_a", "_b"))
            rx = _spearman(m["ixt_a"].to_numpy(float), m["ixt_b"].to_numpy(float))
            ry = _spearman(m["ity_a"].to_numpy(float), m["ity_b"].to_numpy(float))
            n_const += int(math.isnan(rx) or math.isnan(ry))
            rho_x.append(rx)
            rho_y.append(ry)
        pair_rows.append({
            "estimator_a": a, "estimator_b": b, "n_trajectories": len(both),
            "verdict_agreement": float((both[a] == both[b]).mean()) if len(both) else math.nan,
            "spearman_ixt": float(np.nanmedian(rho_x)) if np.isfinite(rho_x).any() else math.nan,
            "spearman_ity": float(np.nanmedian(rho_y)) if np.isfinite(rho_y).any() else math.nan,
            "n_constant": n_const})
    pairs = pd.DataFrame(pair_rows, columns=["estimator_a", "estimator_b", "n_trajectories", "verdict_agreement",
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
def dpi_violations(df: pd.DataFrame, tol: float = 1e-9, estimator_col: str = "estimator", exact: str = "exact",
                   detail: bool = False) -> pd.DataFrame:
    """Data-processing inequality across depth: I(X;T_{l+1}) ≤ I(X;T_l) for every (run, estimator, epoch).

    Each layer's representation is a function of the previous one, so for the true (empirical)
    quantity I(X;T) = H(T) cannot grow with depth.  Layers are ordered by ``layer_index``; each
    consecutive pair of usable layers (failed rows dropped) is one check, a violation when
    I(X;T_{l+1}) > I(X;T_l) + ``tol`` bits.  For ``exact`` a violation is a bug (flagged ``is_bug``
    and warned about); for other estimators it is counted.

    Returns one row per (run, estimator): ``n_checks``, ``n_violations``, ``max_excess`` (bits, 0 when
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
        rows.append({"run": run, estimator_col: est, "n_checks": int(grp["_checked"].sum()), "n_violations": n_v,
                     "max_excess": float(v["excess"].max()) if n_v else 0.0, "example": example,
                     "is_bug": bool(est == exact and n_v > 0)})
    out = pd.DataFrame(rows, columns=["run", estimator_col, "n_checks", "n_violations", "max_excess", "example",
                                      "is_bug"])
    if out["is_bug"].any():
        bad = out[out["is_bug"]]
        warnings.warn(f"the {exact!r} estimator violates the data-processing inequality in run(s) "
                      f"{bad['run'].tolist()} ({bad['example'].iloc[0]}): this is a bug", RuntimeWarning,
                      stacklevel=2)
    return out


def saturation(df: pd.DataFrame, tol: float = 0.01, estimator_col: str = "estimator",
               detail: bool = False) -> pd.DataFrame:
    """Where I(X;T) sits at its ceiling ``ixt_ceiling`` = log2 N (the estimator cannot see compression).

    A row is saturated when I(X;T) ≥ ixt_ceiling − ``tol`` bits (default 0.01 bit: closer than that
    to the ceiling, at most 0.01 bit of compression could ever show).  Returns one row per (run,
    estimator, layer): ``n_epochs``, ``n_saturated``, ``fraction_saturated``, ``first_saturated`` and
    ``last_saturated`` epochs (NaN when none), ``saturated_at_end`` (the last recorded epoch is
    saturated) and ``n_flagged`` (rows the estimator itself flagged in the ``saturated`` column, when
    present).  With ``detail=True`` returns the saturated rows of the table instead.
    """
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    _require(df, ["run", estimator_col, "layer", "epoch", "ixt", "ixt_ceiling"], "saturation")
    data = _usable(df.drop(columns=["ity"], errors="ignore")).sort_values("epoch", kind="stable")
    ceiling = pd.to_numeric(data["ixt_ceiling"], errors="coerce").to_numpy(dtype=float)
    sat = data["ixt"].to_numpy(dtype=float) >= ceiling - tol
    if detail:
        return data[sat].reset_index(drop=True)
    flagged = (data["saturated"].fillna(False).astype(bool).to_numpy() if "saturated" in data.columns
               else np.zeros(len(data), bool))
    d = data.assign(_sat=sat, _flag=flagged)
    rows = []
    for (run, est, layer), g in d.groupby(["run", estimator_col, "layer"], sort=True):
        s = g["_sat"].to_numpy()
        ep = g["epoch"].to_numpy()
        rows.append({"run": run, estimator_col: est, "layer": layer, "n_epochs": len(g), "n_saturated": int(s.sum()),
                     "fraction_saturated": float(s.mean()),
                     "first_saturated": float(ep[s][0]) if s.any() else math.nan,
                     "last_saturated": float(ep[s][-1]) if s.any() else math.nan,
                     "saturated_at_end": bool(s[-1]), "n_flagged": int(g["_flag"].sum())})
    return pd.DataFrame(rows, columns=["run", estimator_col, "layer", "n_epochs", "n_saturated",
                                       "fraction_saturated", "first_saturated", "last_saturated",
                                       "saturated_at_end", "n_flagged"])
