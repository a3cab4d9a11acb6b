"""Phase tables: one row per trajectory (:func:`trajectory_phases`), one per group of seeds (:func:`phase_table`).

Every (``by`` + run) group of the information-plane table is one trajectory.  Its rows with
``status == "ok"`` and finite I values are analysed (:func:`~ibtoolkit.phases.trajectory.analyse_trajectory`);
a trajectory whose estimates all failed becomes verdict ``"failed"`` (reason: how many rows and
their status), one with fewer than 2 usable epochs ``"undetermined"`` / ``"too few points"``:
nothing is dropped silently.

**Robustness.**  Each trajectory is also analysed on the specification grid :data:`ROBUSTNESS_GRID`
(fit fraction × smoothing × minimum compression × simultaneity threshold, the other parameters as
given); ``share_<verdict>`` is the share of the grid giving each verdict, ``robustness`` the share
giving the trajectory's own verdict.  Across seeds, the group's ``robustness`` is the share of all
(seed, grid point) pairs that give the group's verdict; below ``fragile_below`` [0.8] it is
``fragile``.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from .gating import GATE_DEFAULTS, check_gates, gate_reason
from .trajectory import (SPEC_DEFAULTS, VERDICTS, PhaseResult, _check_trajectory, analyse_trajectory, check_spec,
                         fit_index, smooth, unanalysable)

__all__ = ["DEFAULT_GROUP_BY", "ROBUSTNESS_GRID", "OUTCOMES", "trajectory_phases", "phase_table"]

DEFAULT_GROUP_BY = ("dataset", "model", "precision", "variant", "layer", "estimator")
#: Verdicts plus "failed" (every estimate of the trajectory failed).
OUTCOMES = VERDICTS + ("failed",)
#: The specification grid of the robustness share (96 points).
ROBUSTNESS_GRID = {"fit_fraction": (0.5, 0.7, 0.9, 0.95), "smoothing": (1, 3, 5, 9),
                   "min_compression_bits": (0.1, 0.5), "simultaneity_threshold": (0.3, 0.5, 0.7)}
_METRICS = ("e_fit", "e_peak", "compression", "overlap", "lag", "compression_during_fit")


def _require(df, columns, what):
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} expects a pandas DataFrame (the information-plane table), got "
                         f"{type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the table lacks column(s) {missing}; it has {list(df.columns)}")


def usable_mask(df) -> np.ndarray:
    """Rows with status 'ok' (when the column exists) and finite ixt and ity."""
    keep = np.isfinite(pd.to_numeric(df["ixt"], errors="coerce").to_numpy(dtype=float))
    if "ity" in df:
        keep &= np.isfinite(pd.to_numeric(df["ity"], errors="coerce").to_numpy(dtype=float))
    if "status" in df:
        keep &= (df["status"].astype(str) == "ok").to_numpy()
    return keep


def key_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def replicate_col(df) -> str:
    for col in ("run", "seed"):
        if col in df.columns:
            return col
    raise ValueError("the table needs a 'run' or 'seed' column to tell replicate trajectories apart")


def _check_grid(grid) -> dict:
    grid = dict(ROBUSTNESS_GRID if grid is None else grid)
    unknown = sorted(set(grid) - set(SPEC_DEFAULTS))
    if unknown:
        raise ValueError(f"robustness grid: unknown parameter(s) {unknown}; it may vary {sorted(SPEC_DEFAULTS)}")
    if any(len(tuple(v)) == 0 for v in grid.values()):
        raise ValueError("robustness grid: every parameter needs at least one value")
    return {k: tuple(v) for k, v in grid.items()}


def grid_shares(e, x, y, spec: dict, gates: dict, grid: dict, **meta) -> dict:
    """Share of the grid's specifications giving each verdict (``spec`` fills the unvaried ones).

    Per smoothing window the curves, the gates and the compression are computed once, per fit
    fraction e_fit once; the thresholds are then scalar comparisons (the rule of
    :func:`~ibtoolkit.phases.trajectory.classify`).
    """
    names = list(grid)
    combos = [{**spec, **dict(zip(names, combo))} for combo in itertools.product(*(grid[k] for k in names))]
    for s in combos:
        check_spec(**s)
    counts = dict.fromkeys(VERDICTS, 0)
    cache: dict = {}
    for s in combos:
        w = s["smoothing"]
        if w not in cache:
            xs, ys = smooth(x, w), smooth(y, w)
            i_peak = int(np.argmax(xs))
            peak, last = float(xs[i_peak]), float(xs[-1])
            cache[w] = (xs, ys, gate_reason(e, x, xs, ys, **meta, **gates), i_peak, peak, peak - last, {})
        xs, ys, reason, i_peak, peak, comp, fits = cache[w]
        if reason:
            counts["undetermined"] += 1
            continue
        fraction = comp / peak if peak > 0 else 0.0
        if not (comp > 0 and comp >= s["min_compression_bits"] and fraction >= s["min_compression_fraction"]):
            counts["no compression"] += 1
            continue
        if s["fit_fraction"] not in fits:
            fits[s["fit_fraction"]] = fit_index(ys, s["fit_fraction"])[0]
        i_fit = fits[s["fit_fraction"]]
        done = peak - float(xs[i_fit]) if i_fit > i_peak else 0.0
        overlap = min(max(done / comp, 0.0), 1.0)
        counts["simultaneous" if overlap >= s["simultaneity_threshold"] else "separate"] += 1
    return {v: c / len(combos) for v, c in counts.items()}


def _meta(data, pos) -> dict:
    """Gate inputs of one trajectory from the table's columns, when present."""
    meta = {}
    if "ixt_ceiling" in data:
        ceil = pd.to_numeric(data["ixt_ceiling"].iloc[pos], errors="coerce").to_numpy(dtype=float)
        meta["ceiling"] = float(np.nanmax(ceil)) if np.isfinite(ceil).any() else None
    if "ixt_raw" in data:
        meta["ixt_raw"] = pd.to_numeric(data["ixt_raw"].iloc[pos], errors="coerce").to_numpy(dtype=float)
    if "n_states" in data and "n_samples" in data:
        meta["n_states"] = pd.to_numeric(data["n_states"].iloc[pos], errors="coerce").to_numpy(dtype=float)
        meta["n_samples"] = float(pd.to_numeric(data["n_samples"].iloc[pos], errors="coerce").max())
    return meta


def trajectory_phases(df: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUP_BY, *, grid=None,
                      **phase_kwargs) -> pd.DataFrame:
    """One row per trajectory: :func:`analyse_trajectory` on every (``by`` + run) group of the table.

    ``phase_kwargs`` are the thresholds of :func:`analyse_trajectory` (spec and gates); ``grid``
    the robustness grid (default :data:`ROBUSTNESS_GRID`).  The replicate column is ``run`` (or
    ``seed`` without ``run``).  Raises ``ValueError`` if one trajectory holds an epoch twice (add
    ``estimator_params`` to ``by``).  Columns: ``by``, the replicate column (and ``seed``), every
    :class:`PhaseResult` field, ``n_rows`` (rows of the trajectory, failed ones included),
    ``share_<verdict>`` and ``robustness`` (module docstring).
    """
    by = list(by)
    rep = replicate_col(df)
    _require(df, by + ["epoch", "ixt", "ity"], "trajectory_phases")
    spec = {k: phase_kwargs.pop(k, v) for k, v in SPEC_DEFAULTS.items()}
    check_spec(**spec)
    gates = check_gates({**GATE_DEFAULTS, **phase_kwargs})
    grid = _check_grid(grid)
    keys = by + ([rep] if rep not in by else [])
    extra = ["seed"] if ("seed" in df.columns and "seed" not in keys) else []
    data = df.sort_values("epoch", kind="stable")
    ok = usable_mask(data)
    status = data["status"].astype(str).to_numpy() if "status" in data else np.full(len(data), "ok")
    epochs_all = data["epoch"].to_numpy(dtype=float)
    ixt_all = pd.to_numeric(data["ixt"], errors="coerce").to_numpy(dtype=float)
    ity_all = pd.to_numeric(data["ity"], errors="coerce").to_numpy(dtype=float)
    share_cols = ["share_" + v.replace(" ", "_") for v in VERDICTS]
    fields = list(PhaseResult.__dataclass_fields__)
    rows = []
    for key, pos_all in data.groupby(keys, dropna=False, sort=True).indices.items():
        pos = pos_all[ok[pos_all]]
        epochs = epochs_all[pos]
        if np.any(np.diff(epochs) == 0):
            raise ValueError(f"trajectory {dict(zip(keys, key_tuple(key)))} has duplicate epochs; add the "
                             f"column that tells them apart (e.g. 'estimator_params') to the grouping")
        shares = dict.fromkeys(VERDICTS, 0.0)
        if pos.size == 0:
            kinds = pd.Series(status[pos_all]).value_counts()
            text = ", ".join(f"{n} {s}" for s, n in kinds.items())
            res = unanalysable("failed", f"no usable estimate ({text})", 0)
        elif pos.size < 2:
            res = unanalysable("undetermined", "too few points", int(pos.size))
            shares["undetermined"] = 1.0
        else:
            meta = _meta(data, pos)
            res = analyse_trajectory(epochs, ixt_all[pos], ity_all[pos], **meta, **spec, **gates)
            e, x, y = _check_trajectory(epochs, ixt_all[pos], ity_all[pos])
            shares = grid_shares(e, x, y, spec, gates, grid, **meta)
        row = dict(zip(keys, key_tuple(key)))
        for col in extra:
            row[col] = data[col].iloc[pos_all[0]]
        row.update(res.as_dict())
        row["n_rows"] = int(pos_all.size)
        row.update({c: shares[v] for c, v in zip(share_cols, VERDICTS)})
        row["robustness"] = shares.get(res.verdict, 1.0 if res.verdict == "failed" else 0.0)
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + extra + fields + ["n_rows"] + share_cols + ["robustness"])


def bootstrap_median(values: np.ndarray, idx: np.ndarray, level: float) -> tuple[float, float, float]:
    """Median of ``values`` and the percentile-bootstrap interval of the median (NaNs ignored)."""
    if np.isnan(values).all():
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples give NaN, which nanpercentile skips
        boots = np.nanmedian(values[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanpercentile(boots, [100 * alpha, 100 * (1 - alpha)])
    return float(np.nanmedian(values)), float(lo), float(hi)


def reason_counts(verdicts, reasons) -> str:
    """``"saturated 7/10; failed 1/10"``: the reasons of undetermined and failed trajectories, counted."""
    n = len(verdicts)
    labels = [("failed" if v == "failed" else r) for v, r in zip(verdicts, reasons) if v in ("undetermined", "failed")]
    counts = pd.Series(labels, dtype=object).value_counts()
    return "; ".join(f"{r} {c}/{n}" for r, c in counts.items())


def phase_table(df: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP_BY, n_boot: int = 1000,
                seed: int = 0, level: float = 0.95, *, fragile_below: float = 0.8, grid=None,
                **phase_kwargs) -> pd.DataFrame:
    """Per group of seeds: median and bootstrap interval of the phase quantities, the verdict, its reasons.

    Each replicate (``run``, one seed) of a ``group_by`` group is one trajectory
    (:func:`trajectory_phases`, ``phase_kwargs`` passed on).  For m in e_fit, e_peak, compression,
    overlap, lag, compression_during_fit: ``m`` (median over the seeds with a value), ``m_lo``,
    ``m_hi`` (percentile-bootstrap ``level`` interval of that median: ``n_boot`` resamples of the
    seeds with replacement, ``numpy.random.default_rng(seed)``).  ``verdict`` is the most frequent
    outcome over seeds (one of :data:`OUTCOMES`; ``"mixed"`` on a tie, which needs two seeds or
    more), ``verdict_fraction`` its share with bootstrap interval; ``robustness`` (share of seed x
    grid specifications giving ``verdict``), ``fragile`` (robustness < ``fragile_below``),
    ``reason`` (counts of the reasons of undetermined and failed seeds, e.g. ``saturated 7/10``)
    and ``n_simultaneous``, ``n_separate``, ``n_no_compression``, ``n_undetermined``, ``n_failed``.
    """
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if not (0.0 <= fragile_below <= 1.0):
        raise ValueError(f"fragile_below must lie in [0, 1], got {fragile_below!r}")
    group_by = list(group_by)
    per = trajectory_phases(df, by=group_by, grid=grid, **phase_kwargs)
    rep = replicate_col(df)
    rng = np.random.default_rng(seed)
    count_cols = ["n_" + v.replace(" ", "_") for v in OUTCOMES]
    columns = (group_by + ["n_seeds", "seeds"] + [c for m in _METRICS for c in (m, m + "_lo", m + "_hi")]
               + ["verdict", "verdict_fraction", "verdict_fraction_lo", "verdict_fraction_hi", "robustness",
                  "fragile", "reason"] + count_cols)
    rows = []
    for key, g in per.groupby(group_by, dropna=False, sort=True):
        n = len(g)
        idx = rng.integers(0, n, size=(n_boot, n))
        row = dict(zip(group_by, key_tuple(key)))
        row["n_seeds"] = n
        ids = g["seed"] if "seed" in g.columns and g["seed"].notna().all() else g[rep]
        row["seeds"] = ",".join(str(s) for s in ids)
        for m in _METRICS:
            row[m], row[m + "_lo"], row[m + "_hi"] = bootstrap_median(g[m].to_numpy(dtype=float), idx, level)
        verdicts = g["verdict"].to_numpy()
        counts = {v: int(np.sum(verdicts == v)) for v in OUTCOMES}
        best = max(counts.values())
        winners = [v for v in OUTCOMES if counts[v] == best]
        row["verdict"] = winners[0] if len(winners) == 1 else "mixed"
        row["verdict_fraction"] = best / n
        shares = np.stack([(verdicts[idx] == v).mean(axis=1) for v in winners])  # (winners, n_boot)
        boot = shares.max(axis=0) if len(winners) > 1 else shares[0]
        lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
        row["verdict_fraction_lo"], row["verdict_fraction_hi"] = float(lo), float(hi)
        if len(winners) == 1 and row["verdict"] != "failed":
            row["robustness"] = float(g["share_" + row["verdict"].replace(" ", "_")].mean())
        elif len(winners) == 1:
            row["robustness"] = 1.0
        else:
            row["robustness"] = math.nan
        row["fragile"] = bool(row["robustness"] < fragile_below) if math.isfinite(row["robustness"]) else True
        row["reason"] = reason_counts(verdicts, g["reason"].to_numpy())
        for v, c in zip(OUTCOMES, count_cols):
            row[c] = counts[v]
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
