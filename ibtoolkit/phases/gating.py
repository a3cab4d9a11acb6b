"""Validity gates: when an estimated trajectory cannot show compression or its absence.

A verdict is only as good as its estimate.  :func:`gate_reason` returns the first reason, in this
order, that makes a trajectory ``undetermined`` ("" when none); thresholds are the keys of
:data:`GATE_DEFAULTS`, defaults in brackets.  u = log10(e + 1) is the log-epoch axis.

* ``"too few points"``: fewer than ``min_points`` [5] usable recorded epochs.
* ``"above ceiling"``: the raw (unclipped) I(X;T) exceeds the ceiling log2 N by more than
  ``saturation_tol`` [0.05 bit] in at least ``max_saturated_fraction`` [0.5] of the epochs: the
  estimator is out of its range (kNN in high dimension), its clipped values carry no information.
* ``"saturated"``: at least ``max_saturated_fraction`` of the epochs are saturated
  (:func:`saturated_epochs`): an epoch is saturated when I(X;T) ≥ log2 N − ``saturation_tol``
  or its codes are mostly singletons (distinct codes ≥ ``singleton_fraction`` [0.9] × N, N the
  analysed samples): (nearly) every input has its own code, so no compression can show.  The
  saturation check (:func:`ibtoolkit.phases.saturation`) counts the same epochs.
* ``"not fitted"``: the rise of the smoothed I(T;Y), R = max Ĩ(T;Y) − Ĩ(T;Y)_0, is below
  ``min_fit_bits`` [0.05 bit]: there is no fitting phase to place compression against.
* ``"still rising"``: the smoothed I(X;T) peaks within the last ``rising_window`` [0.25] share of
  the recorded points (at least 3 points) *and* the Theil–Sen slope of the raw I(X;T) against u
  over those points (the median of the pairwise slopes (I_j − I_i) / (u_j − u_i)) exceeds
  ``rising_slope`` [0.1 bit per decade of epochs]: the peak, and any compression after it, lies
  beyond the record.  A flat noisy plateau has a median slope near 0 and is not rising.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["GATE_DEFAULTS", "REASONS", "gate_reason", "check_gates", "saturated_epochs", "theil_sen_slope"]

GATE_DEFAULTS = {"min_points": 5, "saturation_tol": 0.05, "max_saturated_fraction": 0.5,
                 "singleton_fraction": 0.9, "min_fit_bits": 0.05, "rising_slope": 0.1, "rising_window": 0.25}
REASONS = ("too few points", "above ceiling", "saturated", "not fitted", "still rising")


def check_gates(gates: dict) -> dict:
    """Refuse unknown gate names and values outside their ranges (ValueError naming them)."""
    unknown = sorted(set(gates) - set(GATE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown phase parameter(s) {unknown}; gates are {sorted(GATE_DEFAULTS)}")
    mp = gates["min_points"]
    if isinstance(mp, bool) or not isinstance(mp, (int, np.integer)) or mp < 2:
        raise ValueError(f"min_points must be an integer >= 2, got {mp!r}")
    for name in ("saturation_tol", "min_fit_bits", "rising_slope"):
        v = gates[name]
        if not (isinstance(v, (int, float, np.number)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    for name in ("max_saturated_fraction", "singleton_fraction", "rising_window"):
        v = gates[name]
        if not (isinstance(v, (int, float, np.number)) and 0.0 < v <= 1.0):
            raise ValueError(f"{name} must lie in (0, 1], got {v!r}")
    return gates


def theil_sen_slope(u: np.ndarray, v: np.ndarray) -> float:
    """Median of the pairwise slopes (v_j − v_i) / (u_j − u_i), i < j (u strictly increasing)."""
    i, j = np.triu_indices(u.size, k=1)
    return float(np.median((v[j] - v[i]) / (u[j] - u[i])))


def saturated_epochs(ixt, ceiling=None, n_states=None, n_samples=None, *, saturation_tol: float = 0.05,
                     singleton_fraction: float = 0.9) -> np.ndarray:
    """Per epoch, whether the estimate there cannot show compression (module docstring, ``saturated``).

    True where I(X;T) ≥ ``ceiling`` − ``saturation_tol`` (when the ceiling is known) or where the
    distinct codes ``n_states`` ≥ ``singleton_fraction`` × ``n_samples`` (when both are known).
    Scalars or per-epoch arrays; NaN values count as not saturated.
    """
    ixt = np.asarray(ixt, dtype=float)
    out = np.zeros(ixt.shape, dtype=bool)
    if ceiling is not None:
        ceil = np.asarray(ceiling, dtype=float)
        out |= np.isfinite(ceil) & (np.nan_to_num(ixt, nan=-np.inf) >= ceil - saturation_tol)
    if n_states is not None and n_samples is not None:
        states = np.nan_to_num(np.asarray(n_states, dtype=float), nan=0.0)
        n = np.asarray(n_samples, dtype=float)
        out |= np.isfinite(n) & (n > 0) & (states >= singleton_fraction * np.nan_to_num(n))
    return out


def _share(mask) -> float:
    return float(np.mean(mask)) if np.size(mask) else 0.0


def gate_reason(epochs: np.ndarray, ixt: np.ndarray, ixt_smooth: np.ndarray, ity_smooth: np.ndarray, *,
                ceiling=None, ixt_raw=None, n_states=None, n_samples=None, min_points=5, saturation_tol=0.05,
                max_saturated_fraction=0.5, singleton_fraction=0.9, min_fit_bits=0.05, rising_slope=0.1,
                rising_window=0.25) -> str:
    """The first validity gate (module docstring) the trajectory fails, or "" when it passes all."""
    n = epochs.size
    if n < min_points:
        return "too few points"
    has_ceiling = ceiling is not None and math.isfinite(float(ceiling))
    if has_ceiling and ixt_raw is not None:
        raw = np.asarray(ixt_raw, dtype=float)
        if _share(np.nan_to_num(raw, nan=-np.inf) > ceiling + saturation_tol) >= max_saturated_fraction:
            return "above ceiling"
    saturated = saturated_epochs(ixt, ceiling, n_states, n_samples, saturation_tol=saturation_tol,
                                 singleton_fraction=singleton_fraction)
    if _share(saturated) >= max_saturated_fraction:
        return "saturated"
    if float(ity_smooth.max() - ity_smooth[0]) < min_fit_bits:
        return "not fitted"
    k = max(3, int(math.ceil(rising_window * n)))
    if int(np.argmax(ixt_smooth)) >= n - k:
        u = np.log10(epochs[-k:] + 1.0)
        if theil_sen_slope(u, ixt[-k:]) > rising_slope:
            return "still rising"
    return ""
