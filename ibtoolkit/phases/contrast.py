r"""A seed-level test of a claim: two groups of seeds compared on a per-trajectory statistic.

:func:`contrast` splits the runs of an information-plane table into group a and group b (the two
values of the ``between`` column, or the values / model names given as ``a`` and ``b``), computes
the statistic of every trajectory (default D, :mod:`ibtoolkit.phases.statistic`) and, for every
(dataset, estimator label, layer index) present in both groups, with :math:`v^a_1..v^a_{n_a}`
and :math:`v^b_1..v^b_{n_b}` the seeds' values:

* ``estimate`` :math:`= \operatorname{median}(v^a) − \operatorname{median}(v^b)`;
* ``ci_low``/``ci_high``: percentile bootstrap over seeds, each group resampled with replacement
  on its own (``n_boot`` resamples), the (1 − level)/2 and (1 + level)/2 quantiles of the
  resampled estimates;
* ``p_value``: two-sided permutation test of the estimate, seeds exchanged between the groups:
  :math:`p = \#\{|d_\pi| \ge |d_{obs}|\} / \#\pi` over *all* :math:`\binom{n_a+n_b}{n_a}` splits
  when there are at most ``max_exact`` of them, else :math:`p = (1 + \#\{|d_\pi| \ge |d_{obs}|\}) /
  (1 + n_{perm})` over ``n_perm`` (≥ 2000) random permutations. The default ``max_exact`` covers
  10 + 10 seeds, so their p is exact rather than drawn (184 756 splits, enumerated once). Its floor
  for the median difference is :math:`2\binom{8}{4}/\binom{20}{10} = 140/184\,756 ≈ 7.6\cdot10^{-4}`,
  reached by groups that do not overlap (every split that keeps both groups' middle seeds is as
  extreme): Holm's adjustment brings it under 0.05 only in a call of at most 65 rows;
* ``p_holm``: Holm's step-down adjustment over the rows of the call: with the m finite p values
  sorted :math:`p_{(1)} \le .. \le p_{(m)}`,
  :math:`\tilde p_{(i)} = \min(1, \max_{j \le i} (m − j + 1)\, p_{(j)})`;
* ``n_a``/``n_b`` the seeds used, ``n_excluded_a``/``n_excluded_b`` those left out: failed
  trajectories, NaN statistics (no fitting phase) and, unless ``include_undetermined``, the
  ``undetermined`` ones.

With one seed per group the smallest possible p is 1: the test cannot reject, and says so.
"""
from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd

from .table import _require, replicate_col, trajectory_phases

__all__ = ["contrast", "compare_seeds", "permutation_p_value", "bootstrap_interval", "holm", "CONTRAST_COLUMNS"]

CONTRAST_COLUMNS = ["group_a", "group_b", "statistic", "estimate", "ci_low", "ci_high", "p_value", "p_holm",
                    "n_a", "n_b", "n_excluded_a", "n_excluded_b"]
_KEYS = ["dataset", "estimator_label", "layer_index"]


def permutation_p_value(a, b, *, n_perm: int = 2000, max_exact: int = 200_000, rng=None) -> float:
    """Two-sided permutation p value of median(a) − median(b) (module docstring)."""
    _check_resampling(max_exact=max_exact)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = a.size, b.size
    if na == 0 or nb == 0:
        return math.nan
    pooled = np.concatenate([a, b])
    n = na + nb
    observed = abs(np.median(a) - np.median(b))
    tol = 1e-12 * max(1.0, observed)
    if math.comb(n, na) <= max_exact:
        chosen, rest = _splits(na, nb)
        d = np.median(pooled[chosen], axis=1) - np.median(pooled[rest], axis=1)
        return float(np.mean(np.abs(d) >= observed - tol))
    _check_resampling(n_perm=n_perm)
    rng = np.random.default_rng(rng)
    perms = rng.permuted(np.broadcast_to(pooled, (n_perm, n)), axis=1)
    d = np.median(perms[:, :na], axis=1) - np.median(perms[:, na:], axis=1)
    return float((1 + np.sum(np.abs(d) >= observed - tol)) / (1 + n_perm))


@lru_cache(maxsize=8)
def _splits(na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Every split of na + nb seeds into groups of na and nb: (C, na) and (C, nb) index arrays, built
    once per group size (C(20, 10) = 184 756 splits of 10 + 10 seeds: 30 MB, reused by every call)."""
    n = na + nb
    chosen = np.fromiter((i for c in combinations(range(n), na) for i in c), dtype=np.int32,
                         count=math.comb(n, na) * na).reshape(-1, na)
    mask = np.zeros((chosen.shape[0], n), dtype=bool)
    mask[np.arange(chosen.shape[0])[:, None], chosen] = True
    rest = np.nonzero(~mask)[1].reshape(chosen.shape[0], nb).astype(np.int32)
    chosen.setflags(write=False)
    rest.setflags(write=False)
    return chosen, rest


def bootstrap_interval(a, b, *, n_boot: int = 2000, level: float = 0.95, rng=None) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(a) − median(b), each group resampled on its own."""
    _check_resampling(n_boot=n_boot, level=level)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(rng)
    d = (np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
         - np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1))
    lo, hi = np.percentile(d, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def compare_seeds(a, b, *, n_boot: int = 2000, level: float = 0.95, n_perm: int = 2000, max_exact: int = 200_000,
                  rng=None) -> dict:
    """One row of the seed-level test: ``estimate`` = median(a) − median(b), its percentile-bootstrap
    interval ``ci_low``/``ci_high``, the permutation ``p_value`` (module docstring) and the seeds
    ``n_a``/``n_b``; NaN statistics when a group has no value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = a.size and b.size
    lo, hi = bootstrap_interval(a, b, n_boot=n_boot, level=level, rng=rng) if both else (math.nan, math.nan)
    return {"estimate": float(np.median(a) - np.median(b)) if both else math.nan, "ci_low": lo, "ci_high": hi,
            "p_value": permutation_p_value(a, b, n_perm=n_perm, max_exact=max_exact, rng=rng) if both else math.nan,
            "n_a": int(a.size), "n_b": int(b.size)}


def _check_resampling(*, n_boot=None, level=None, n_perm=None, max_exact=None) -> None:
    """Refuse resampling settings that cannot work, naming them (ValueError)."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if n_boot is not None and not (is_int(n_boot) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if level is not None and not (isinstance(level, (int, float, np.number)) and 0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if n_perm is not None and not (is_int(n_perm) and n_perm >= 2000):
        raise ValueError(f"n_perm must be an integer of at least 2000, got {n_perm!r}")
    if max_exact is not None and not (is_int(max_exact) and max_exact >= 0):
        raise ValueError(f"max_exact must be an integer >= 0, got {max_exact!r}")


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p values (NaN stays NaN, the others are adjusted among themselves)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, (str, int, float, np.generic)) else list(value)


def _membership(plane, between, values, side) -> tuple[np.ndarray, str]:
    """Rows whose ``between`` value or model name is one of ``values``; and the group's label."""
    mask = plane[between].astype(str).isin([str(v) for v in values]).to_numpy()
    if "model" in plane:
        mask = mask | plane["model"].astype(str).isin([str(v) for v in values]).to_numpy()
    if not mask.any():
        known = sorted(set(plane[between].dropna().astype(str)) | set(plane.get("model", pd.Series(dtype=str))
                                                                      .dropna().astype(str)))
        raise ValueError(f"group {side}: none of {values} is a value of {between!r} or a model; known: {known}")
    return mask, "+".join(str(v) for v in values)


def contrast(plane: pd.DataFrame, between: str = "precision", a=None, b=None, *,
             statistic: str = "compression_during_fit", include_undetermined: bool = False, n_boot: int = 2000,
             n_perm: int = 2000, max_exact: int = 200_000, level: float = 0.95, seed: int = 0,
             **phase_kwargs) -> pd.DataFrame:
    """Compare two groups of seeds on a per-trajectory statistic, per (dataset, estimator label, layer index).

    ``plane`` is the tidy information-plane table (every row; failed rows count as excluded seeds).
    Without ``a``/``b``, ``between`` must hold exactly two values (sorted: a is the first) and
    each group a single model, so that controls and quantizers are never pooled by accident;
    otherwise name the groups: ``a``/``b`` are values of ``between`` or model names (one or a
    list).  ``statistic`` is a column of :func:`trajectory_phases` (default D, the
    threshold-free compression during fitting).  ``phase_kwargs`` go to the trajectory analysis.
    Columns: dataset, estimator_label, layer_index, then :data:`CONTRAST_COLUMNS` (module docstring).
    """
    label = "estimator_label" if "estimator_label" in getattr(plane, "columns", ()) else "estimator"
    _require(plane, [between, "dataset", label, "layer_index", "epoch", "ixt", "ity"], "contrast")
    rep = replicate_col(plane)
    if (a is None) != (b is None):
        raise ValueError("give both a and b, or neither (then the two values of the between column are compared)")
    if a is None:
        values = sorted(plane[between].dropna().astype(str).unique())
        if len(values) != 2:
            raise ValueError(f"{between!r} has {len(values)} values {values}; choose the groups with a= and b=")
        mask_a, name_a = _membership(plane, between, [values[0]], "a")
        mask_b, name_b = _membership(plane, between, [values[1]], "b")
        for mask, name in ((mask_a, name_a), (mask_b, name_b)):
            models = sorted(plane.loc[mask, "model"].dropna().astype(str).unique()) if "model" in plane else []
            if len(models) > 1:
                raise ValueError(f"group {name!r} pools models {models}; choose them with a= and b= (model names "
                                 f"or values of {between!r}) so that controls and quantizers are not pooled by accident")
    else:
        mask_a, name_a = _membership(plane, between, _as_list(a), "a")
        mask_b, name_b = _membership(plane, between, _as_list(b), "b")
    if (mask_a & mask_b).any():
        raise ValueError(f"groups a ({name_a}) and b ({name_b}) share rows; they must be disjoint")
    _check_resampling(n_boot=n_boot, level=level, n_perm=n_perm, max_exact=max_exact)
    sub = plane[mask_a | mask_b].assign(_group=np.where(mask_a[mask_a | mask_b], "a", "b"))
    per = trajectory_phases(sub, by=["dataset", label, "layer_index", "_group"], grid={}, **phase_kwargs)
    if statistic not in per.columns:
        raise ValueError(f"statistic {statistic!r} is not a column of the trajectory table; choose one of "
                         f"{[c for c in per.columns if pd.api.types.is_numeric_dtype(per[c])]}")
    values_all = pd.to_numeric(per[statistic], errors="coerce").to_numpy(dtype=float)
    usable = np.isfinite(values_all) & (per["verdict"] != "failed").to_numpy()
    if not include_undetermined:
        usable &= (per["verdict"] != "undetermined").to_numpy()
    per = per.assign(_value=values_all, _use=usable)
    rng = np.random.default_rng(seed)
    rows = []
    for key, g in per.groupby(["dataset", label, "layer_index"], sort=True, dropna=False):
        ga, gb = g[g["_group"] == "a"], g[g["_group"] == "b"]
        if ga.empty or gb.empty:
            continue
        va, vb = ga.loc[ga["_use"], "_value"].to_numpy(), gb.loc[gb["_use"], "_value"].to_numpy()
        rows.append({"dataset": key[0], "estimator_label": key[1], "layer_index": key[2], "group_a": name_a,
                     "group_b": name_b, "statistic": statistic,
                     **compare_seeds(va, vb, n_boot=n_boot, level=level, n_perm=n_perm, max_exact=max_exact, rng=rng),
                     "n_excluded_a": int(len(ga) - va.size), "n_excluded_b": int(len(gb) - vb.size)})
    out = pd.DataFrame(rows, columns=_KEYS + [c for c in CONTRAST_COLUMNS if c != "p_holm"])
    out.insert(out.columns.get_loc("p_value") + 1, "p_holm", holm(out["p_value"].to_numpy(dtype=float)))
    return out[_KEYS + CONTRAST_COLUMNS]
