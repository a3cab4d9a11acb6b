"""The analysis inputs ``x``, grouped and keyed once per estimator instance, and the discrete point.

The inputs of a run never change across layers and epochs, so their distinct rows (and keys) are
computed once and reused (:class:`InputGroups`, :class:`InputKeyCache`); :func:`discrete_point`
gives the two coordinates of the information plane from keyed ``x``, ``t`` and ``y``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .entropy import NOISE_TOL, clamp_noise, counts, entropy, entropy_bits
from .keys import combine, label_keys
from .rows import Keys, distinct_rows

__all__ = ["InputKeys", "InputKeyCache", "InputGroups", "discrete_point"]


class InputGroups:
    """Distinct rows of the analysis inputs ``x``, computed once and reused while ``x`` is unchanged.

    ``inverse[i]`` is the index of the distinct input of row i, ``first[u]`` a row of input u,
    ``counts[u]`` its multiplicity (:func:`distinct_rows`) and ``keys`` the same as
    :class:`InputKeys` for the counting estimators.  The inputs of a run never change across layers
    and epochs, so this is done once: a later :meth:`update` reuses it when given the very same
    array object, or an array equal (``np.array_equal``) to the private copy kept here; anything
    else is grouped anew.  (Passing the same object after modifying it in place is not detected.)
    NaN never reaches here (validation refuses it).
    """

    def __init__(self):
        self._obj = None
        self._copy = None
        self.first = None
        self.inverse = None
        self.counts = None
        self.keys: InputKeys | None = None

    def update(self, x: np.ndarray) -> "InputGroups":
        if self._copy is not None and (x is self._obj or (x.shape == self._copy.shape and x.dtype == self._copy.dtype
                                                          and np.array_equal(x, self._copy))):
            return self
        self.first, self.inverse, self.counts = distinct_rows(x)
        n_distinct = int(self.counts.size)
        self.keys = InputKeys(Keys(self.inverse, n_distinct, True), self.counts, n_distinct)
        self._obj, self._copy = x, np.array(x, copy=True)
        return self

    @property
    def n_distinct(self) -> int:
        return int(self.counts.size)

    @property
    def all_distinct(self) -> bool:
        return self.counts.size == self.inverse.size

    def t_is_function_of_x(self, t: np.ndarray) -> bool:
        """True when rows of ``t`` are identical within every group of identical ``x`` rows."""
        if self.all_distinct:
            return True
        return bool(np.array_equal(t, t[self.first[self.inverse]]))


@dataclass(frozen=True)
class InputKeys:
    """Dense keys of the analysis inputs and what follows from them."""

    keys: Keys
    counts: np.ndarray
    n_distinct: int

    @property
    def all_distinct(self) -> bool:
        return self.n_distinct == self.keys.n

    @property
    def ceiling(self) -> float:
        """log2 of the number of distinct inputs: the largest possible I(X;T)."""
        return math.log2(self.n_distinct)


class InputKeyCache:
    """:class:`InputKeys` of ``x`` computed once and reused while ``x`` does not change (the reuse
    rule of :class:`InputGroups`, which computes them)."""

    def __init__(self):
        self._groups = InputGroups()

    def get(self, x: np.ndarray) -> InputKeys:
        return self._groups.update(x).keys


def discrete_point(xk: InputKeys, kt: Keys, y: np.ndarray, miller_madow: bool = False) -> tuple[float, float, dict]:
    """I(X;T) and I(T;Y) in bits for keyed inputs ``xk``, keyed representation ``kt`` and labels ``y``.

    :math:`I(X;T) = H(T) - H(T|X)`, :math:`H(T|X) = H(X,T) - H(X)` over the empirical
    distribution of the N rows (exactly 0 when all inputs are distinct, Miller–Madow included,
    since then every (x, t) cell holds one sample); :math:`I(T;Y) = H(T) + H(Y) - H(T,Y)`.

    Returns ``(ixt, ity, extras)`` with extras ``n_states``, ``h_t``, ``h_y``, ``ixt_ceiling``,
    ``saturated``.  Plug-in values are clamped into their bounds only by float noise
    (:func:`clamp_noise`).  With ``miller_madow`` every entropy gains (m − 1)/(2N ln 2) bits (m
    occupied cells), which targets the entropy of the population the N samples were drawn from,
    not the empirical-distribution estimand (for which the plug-in value is exact): the corrected
    I(X;T) can exceed log2 N and is clipped into [0, ceiling], I(T;Y) into [0, plug-in H(Y)]; the
    unclipped values are the extras ``ixt_raw``/``ity_raw``.
    """
    if kt.n != xk.keys.n or y.shape[0] != kt.n:
        raise ValueError(f"x, t and y must have the same number of samples, got {xk.keys.n}, {kt.n}, {y.shape[0]}")
    ky = label_keys(y)
    ct = counts(kt)
    h_t = entropy_bits(ct, miller_madow)
    h_y = entropy_bits(counts(ky), miller_madow)
    # every row of t distinct: each joint cell (x, t) or (t, y) holds one sample, like each cell of
    # t, so H(X,T) = H(T,Y) = H(T) (the same counts, hence the same number), no combined keys needed
    t_distinct = ct.shape[0] == kt.n
    if xk.all_distinct:
        h_t_given_x = 0.0
    else:
        h_x = entropy_bits(xk.counts, miller_madow)
        h_t_given_x = (h_t if t_distinct else entropy(combine(xk.keys, kt), miller_madow)) - h_x
    ceiling = xk.ceiling
    ixt = clamp_noise(h_t - h_t_given_x, 0.0, ceiling)
    h_ty = h_t if t_distinct else entropy(combine(kt, ky), miller_madow)
    ity = clamp_noise(h_t + h_y - h_ty, 0.0, min(h_t, h_y))
    extras = {"n_states": int(ct.shape[0]), "h_t": h_t, "h_y": h_y, "ixt_ceiling": ceiling}
    if miller_madow:  # the corrected values can leave [0, ceiling]: clip them, keep the raw ones
        h_y_plugin = entropy_bits(counts(ky), False)
        extras.update(ixt_raw=ixt, ity_raw=ity)
        ixt = min(max(ixt, 0.0), ceiling)
        ity = min(max(ity, 0.0), h_y_plugin)
    extras["saturated"] = bool(ixt >= ceiling - NOISE_TOL)
    return ixt, ity, extras
