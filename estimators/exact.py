"""``exact``: plug-in entropies of discrete representations (BNN ±1 codes, quantized layers).

With ``X`` the empirical (uniform) distribution over the N analysis rows, ``T`` a discrete code of
each row and ``Y`` its label, all distributions are empirical frequencies and

.. math::

    I(X;T) = H(T) - H(T \\mid X), \\quad H(T \\mid X) = H(X, T) - H(X), \\qquad
    I(T;Y) = H(T) + H(Y) - H(T, Y)

in bits.  For distinct inputs and a deterministic network H(T|X) = 0 and I(X;T) = H(T); duplicate
inputs with different codes give H(T|X) > 0.  This is the quantity the information-bottleneck
literature estimates for quantized networks (Raj, Nayak & Kalyani, 2020; Lorenzen, Igel &
Nielsen, 2022) without a binning resolution.  ``miller_madow=True`` adds the Miller–Madow
correction (m - 1) / (2 N ln 2) to each entropy (m = non-empty cells).

Which layers are discrete is *declared* by the network (the quantizer the next layer applies,
see :mod:`ibtoolkit.taps`); :func:`ibtoolkit.information_plane` and :class:`ibtoolkit.IBCallback`
ask :meth:`~ibtoolkit.Estimator.refusal` once per layer, so a layer declared continuous is refused
with a message naming ``binning`` and ``kde`` before any estimate.  Called directly on an array
(no declaration), ``exact`` refuses a column with more than ``max_levels`` values.  Every result
reports ``levels``, the number of distinct values it saw in ``t`` (2 for ±1 codes, at most
:math:`2^k` for a k-bit quantizer).

Counting is done by :mod:`estimators.counting`: one int64 key per row (bit-packing for ±1 codes,
mixed radix or a checked 64-bit hash otherwise), then ``bincount`` or one sort.  The keys of ``x``
are computed once per instance and reused while ``x`` is unchanged.
"""
from __future__ import annotations

import numpy as np

from ibtoolkit import EstimateResult, Estimator, register_estimator

from .counting import InputKeyCache, discrete_point, mutual_information_keys, row_keys

__all__ = ["ExactEstimator"]


@register_estimator("exact")
class ExactEstimator(Estimator):
    """Exact plug-in I(X;T) and I(T;Y) for discrete ``t``.

    Parameters
    ----------
    miller_madow : bool
        Add the Miller–Madow bias correction to every entropy (default False: plain plug-in).
    max_levels : int
        Largest number of distinct values a column of ``t`` may take; a column with more is taken
        as continuous and refused with a :class:`ValueError` that suggests ``binning``.

    Extras
    ------
    ``n_states`` (distinct codes of T), ``levels`` (distinct values of T's entries), ``h_t``, ``h_y`` (bits), ``ixt_ceiling`` = log2(number of
    distinct input rows), ``saturated`` (I(X;T) reached that ceiling).
    """

    discrete_only = True
    checks_t_finite = True  # row_keys(check_finite=True) below: free for ±1 codes, one scan otherwise
    deterministic = True  # plug-in counts of (x, t, y)

    def __init__(self, miller_madow: bool = False, max_levels: int = 256):
        if not isinstance(miller_madow, bool):
            raise ValueError(f"miller_madow must be True or False, got {miller_madow!r}")
        if isinstance(max_levels, bool) or not isinstance(max_levels, int) or max_levels < 2:
            raise ValueError(f"max_levels must be an integer >= 2, got {max_levels!r}")
        self.miller_madow = miller_madow
        self.max_levels = max_levels
        self._x_cache = InputKeyCache()

    def _fit(self, x, epochs, y) -> None:
        """Key the inputs once (the cache every estimate of the run reuses)."""
        self._x_cache.get(x)

    def _estimate(self, x, t, y) -> EstimateResult:
        xk = self._x_cache.get(x)
        kt = row_keys(t, max_levels=self.max_levels, name="t", check_finite=True)
        ixt, ity, extras = discrete_point(xk, kt, y, self.miller_madow)
        extras["levels"] = distinct_values(t)
        return EstimateResult(ixt, ity, extras)

    def _mutual_information(self, a, b) -> float:
        """I(A;B) in bits between two discrete arrays (plug-in, or Miller–Madow if enabled)."""
        ka = row_keys(a, max_levels=self.max_levels, name="a")
        kb = row_keys(b, max_levels=self.max_levels, name="b")
        return mutual_information_keys(ka, kb, self.miller_madow)


def distinct_values(t: np.ndarray) -> int:
    """Number of distinct values among the entries of ``t``: one pass for ±1 codes (which of -1 and
    +1 occur), a sort of the entries otherwise."""
    if t.dtype == np.float32 and np.count_nonzero(np.abs(t) == 1) == t.size:
        return int(bool((t > 0).any())) + int(bool((t < 0).any()))
    return int(np.unique(t).size)
