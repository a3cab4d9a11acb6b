"""Counts and plug-in entropies of keyed variables, in bits.

.. math::

    \\hat H(K) = -\\sum_k \\frac{n_k}{N} \\log_2 \\frac{n_k}{N}
              = \\log_2 N - \\frac{1}{N} \\sum_k n_k \\log_2 n_k,

optionally with the Miller–Madow bias correction (Miller, 1955)
:math:`\\hat H_{MM} = \\hat H + (m - 1) / (2 N \\ln 2)`, ``m`` the number of non-empty cells, and
:math:`I(A;B) = H(A) + H(B) - H(A,B)`.  Counting uses ``np.bincount`` when the key space is small
(at most ``8 N + 4096`` cells), otherwise one sort.
"""
from __future__ import annotations

import math

import numpy as np

from ibtoolkit.estimator import LN2

from .keys import combine
from .rows import Keys, bincount_ok

__all__ = ["counts", "entropy_bits", "entropy_from_counts", "entropy", "joint_entropy", "clamp_noise",
           "mutual_information_keys", "NOISE_TOL"]

#: Largest deviation outside a mathematical bound that is treated as float rounding and clamped.
NOISE_TOL = 1e-9


def counts(keys: Keys) -> np.ndarray:
    """Counts of the distinct keys (only non-empty cells), int64."""
    codes = keys.codes
    if bincount_ok(keys.size, codes.shape[0]):
        c = np.bincount(codes)
        return c if keys.is_dense else c[c > 0]
    s = np.sort(codes)
    edges = np.flatnonzero(s[1:] != s[:-1]) + 1
    return np.diff(np.concatenate(([0], edges, [s.shape[0]])))


def entropy_bits(c: np.ndarray, miller_madow: bool) -> float:
    """Plug-in (optionally Miller–Madow) entropy in bits of positive counts ``c`` (not validated)."""
    n = float(c.sum())
    cf = c.astype(np.float64)
    h = math.log2(n) - float(np.dot(cf, np.log2(cf))) / n
    if miller_madow:
        h += (c.shape[0] - 1) / (2.0 * n * LN2)
    return h


def entropy_from_counts(counts_, miller_madow: bool = False) -> float:
    """Plug-in entropy in bits of a histogram: :math:`\\log_2 N - \\frac1N \\sum_k n_k \\log_2 n_k`.

    With ``miller_madow=True`` adds :math:`(m-1)/(2N\\ln 2)`, m = number of non-empty cells
    (Miller, 1955).  Empty cells are ignored.
    """
    c = np.asarray(counts_)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {c.shape}")
    if not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
        raise ValueError(f"counts must be numbers, got dtype {c.dtype}")
    if np.issubdtype(c.dtype, np.floating):
        if not np.isfinite(c).all():
            raise ValueError("counts contain NaN or infinite values")
        if not np.array_equal(c, np.round(c)):
            raise ValueError("counts must be whole numbers")
    if (c < 0).any():
        raise ValueError("counts must be non-negative")
    c = c[c > 0]
    if c.size == 0:
        raise ValueError("counts sum to zero: no samples")
    return entropy_bits(c, miller_madow)


def entropy(keys: Keys, miller_madow: bool = False) -> float:
    """Plug-in (optionally Miller–Madow) entropy in bits of the keyed variable."""
    return entropy_bits(counts(keys), miller_madow)


def joint_entropy(k1: Keys, k2: Keys, miller_madow: bool = False) -> float:
    """:math:`H(K_1, K_2)` in bits, through the combined keys of :func:`combine`."""
    return entropy(combine(k1, k2), miller_madow)


def clamp_noise(value: float, lo: float, hi: float, tol: float = NOISE_TOL) -> float:
    """Clamp ``value`` into ``[lo, hi]`` only when it lies outside by at most ``tol`` (float rounding).

    Larger deviations are returned unchanged: they are real (e.g. a Miller–Madow correction) or a
    bug, and must stay visible.
    """
    if lo - tol <= value < lo:
        return lo
    if hi < value <= hi + tol:
        return hi
    return value


def mutual_information_keys(ka: Keys, kb: Keys, miller_madow: bool = False) -> float:
    """:math:`I(A;B) = H(A) + H(B) - H(A,B)` in bits, from row keys."""
    ca, cb = counts(ka), counts(kb)
    ha, hb = entropy_bits(ca, miller_madow), entropy_bits(cb, miller_madow)
    hab = entropy(combine(ka, kb), miller_madow)
    return clamp_noise(ha + hb - hab, 0.0, min(ha, hb))
