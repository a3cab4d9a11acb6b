"""``binning``: the Shwartz-Ziv & Tishby (2017) binning estimator.

Each unit's activation is discretised into bins, the binned layer is treated as a discrete code
and the plug-in quantities of :mod:`estimators.exact` are computed on it:

.. math::

    \\tilde T = \\mathrm{bin}(T), \\quad I(X;T) \\approx H(\\tilde T) - H(\\tilde T \\mid X), \\quad
    I(T;Y) \\approx H(\\tilde T) + H(Y) - H(\\tilde T, Y)  \\quad\\text{(bits)}.

Bin schemes (one per instance, fixed for the whole run so edges never change between epochs):

* ``n_bins`` equal bins on a fixed ``value_range`` (default 30 bins on [-1, 1], Shwartz-Ziv &
  Tishby 2017): bin index :math:`\\lfloor (v - lo) \\cdot n_{bins} / (hi - lo) \\rfloor`; values
  outside the range go to the edge bins (clip), as in the original code;
* ``value_range="data"``: the same, with ``(lo, hi)`` the min and max of *one layer of one run
  over all its recorded epochs*, set by :meth:`~ibtoolkit.Estimator.fit` (which
  :func:`ibtoolkit.information_plane` calls per run and layer before any estimate, streaming the
  layer's epochs from the store), so the edges never depend on which array came first nor on the
  worker that estimates; :meth:`BinningEstimator.fit_range` sets a range explicitly (e.g. Saxe et
  al. 2018's one range over all layers of a run, which a per-layer fit is not: with a shared range
  a layer of small activations gets few occupied bins).  Estimating in this mode before a fit
  raises ``ValueError``;
* ``bin_size`` (Saxe et al. 2018 used 0.07): edges at the integer multiples of ``bin_size``,
  unbounded, :math:`\\lfloor v / \\text{bin\\_size} \\rfloor`; overrides ``n_bins`` and
  ``value_range``.

On a ±1 layer any of these puts -1 and +1 into two different bins, so the result equals ``exact``.

Clipping.  With a range, values below ``lo`` or above ``hi`` go to the edge bins, which merges
distinct values and reads as compression.  The extra ``clipped_fraction`` is the share of the
N × d values of ``t`` outside ``[lo, hi]`` (0 in bin-size mode, and 0 on every recorded epoch of
a fitted ``"data"`` range); :func:`ibtoolkit.information_plane` warns once per layer when it is
above 0.
"""
from __future__ import annotations

import math

import numpy as np

from ibtoolkit import EstimateResult, Estimator, register_estimator

from .counting import InputKeyCache, Keys, codes_keys, discrete_point, mutual_information_keys

__all__ = ["BinningEstimator"]


@register_estimator("binning")
class BinningEstimator(Estimator):
    """Binned plug-in I(X;T) and I(T;Y) (Shwartz-Ziv & Tishby, 2017).

    Parameters
    ----------
    n_bins : int
        Number of equal bins on the value range (default 30).
    value_range : (float, float) or "data"
        Fixed bin range (default (-1, 1), for tanh); ``"data"``: the layer's min and max over all
        recorded epochs of the run, set by :meth:`fit` (or explicitly by :meth:`fit_range`).
    bin_size : float or None
        Width of unbounded bins at multiples of ``bin_size`` (e.g. 0.07, Saxe et al. 2018);
        overrides ``n_bins`` and ``value_range``.
    miller_madow : bool
        Miller–Madow bias correction of every entropy.

    Extras
    ------
    As ``exact`` (``n_states``, ``h_t``, ``h_y``, ``ixt_ceiling``, ``saturated``) plus ``n_bins``,
    ``bin_size``, ``bin_range`` (the ``[lo, hi]`` used, None in bin-size mode) and
    ``clipped_fraction`` (share of values outside ``bin_range``).
    """

    deterministic = True  # a function of (x, t, y) and the fitted range

    def __init__(self, n_bins: int = 30, value_range=(-1, 1), bin_size: float | None = None,
                 miller_madow: bool = False):
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        if bin_size is not None:
            if isinstance(bin_size, bool) or not isinstance(bin_size, (int, float, np.number)) \
                    or not math.isfinite(bin_size) or bin_size <= 0:
                raise ValueError(f"bin_size must be a positive finite number or None, got {bin_size!r}")
            bin_size = float(bin_size)
        if isinstance(value_range, str):
            if value_range != "data":
                raise ValueError(f"value_range must be a (low, high) pair or 'data', got {value_range!r}")
            fixed = None
        else:
            fixed = _check_range(value_range, "value_range")
        if not isinstance(miller_madow, bool):
            raise ValueError(f"miller_madow must be True or False, got {miller_madow!r}")
        self.n_bins = int(n_bins)
        self.value_range = value_range if isinstance(value_range, str) else tuple(fixed)
        self.bin_size = bin_size
        self.miller_madow = miller_madow
        self._range = fixed
        self._x_cache = InputKeyCache()

    # -- the bin edges ------------------------------------------------------------------------
    @property
    def bin_range(self) -> tuple[float, float] | None:
        """The ``(lo, hi)`` in use (None before a "data" range is fixed, and in bin-size mode)."""
        return None if self.bin_size is not None else self._range

    @property
    def needs_fit_data(self) -> bool:
        """True in ``value_range="data"`` mode: :meth:`fit` reads every recorded epoch of the layer."""
        return self.bin_size is None and self.value_range == "data"

    def _fit(self, x, epochs, y) -> None:
        """Key the inputs once; in ``"data"`` mode set the range to the min and max over ``epochs``."""
        self._x_cache.get(x)
        if not self.needs_fit_data:
            return
        lo, hi, seen = math.inf, -math.inf, 0
        for t in epochs:
            lo, hi, seen = min(lo, float(t.min())), max(hi, float(t.max())), seen + 1
        if not seen:
            raise ValueError("binning with value_range='data' needs at least one recorded epoch to fit its range")
        self._range = (lo, hi)

    def fitted_params(self) -> dict:
        """``{"bin_range": [lo, hi]}`` in ``"data"`` mode once fitted, else ``{}``."""
        if not self.needs_fit_data or self._range is None:
            return {}
        return {"bin_range": [float(self._range[0]), float(self._range[1])]}

    def set_fitted(self, **fitted) -> "BinningEstimator":
        """Restore a fitted ``bin_range`` (a parallel worker gets it from the fitting process)."""
        unknown = set(fitted) - {"bin_range"}
        if unknown:
            raise ValueError(f"binning has no fitted value(s) {sorted(unknown)}")
        if "bin_range" in fitted:
            self.fit_range([np.asarray(fitted["bin_range"], dtype=float)])
        return self

    def fit_range(self, values) -> tuple[float, float]:
        """Fix the bin range to the global min and max of ``values`` (an array or a list of arrays).

        Only meaningful with ``value_range="data"``; the range then stays fixed for every later
        call of this instance.  Returns ``(lo, hi)``.
        """
        if self.bin_size is not None or self.value_range != "data":
            raise ValueError("fit_range() needs value_range='data' (this instance uses "
                             + (f"bin_size={self.bin_size})" if self.bin_size is not None
                                else f"the fixed value_range={self.value_range})"))
        parts = values if isinstance(values, (list, tuple)) else [values]
        if not parts:
            raise ValueError("fit_range() got no values")
        los, his = [], []
        for i, part in enumerate(parts):
            arr = np.asarray(part)
            if arr.size == 0:
                raise ValueError(f"fit_range() got an empty array (item {i})")
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
                raise ValueError(f"fit_range() needs numbers, got dtype {arr.dtype} (item {i})")
            lo, hi = float(arr.min()), float(arr.max())
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"fit_range() got NaN or infinite values (item {i})")
            los.append(lo)
            his.append(hi)
        self._range = (min(los), max(his))
        return self._range

    def bin(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin indices of ``t`` (N, d) and the number of levels per column (edges as configured)."""
        if self.bin_size is not None:
            return _bin_by_size(t, self.bin_size)
        if self._range is None:
            raise ValueError("binning with value_range='data' must be fitted first: call fit(x, epochs, y) with "
                             "every recorded epoch of the layer (information_plane does), or fit_range(values)")
        return _bin_by_range(t, self._range, self.n_bins)

    def _keys(self, t: np.ndarray) -> Keys:
        codes, levels = self.bin(t)
        return codes_keys(codes, levels)

    # -- the contract -------------------------------------------------------------------------
    def _estimate(self, x, t, y) -> EstimateResult:
        xk = self._x_cache.get(x)
        kt = self._keys(t)
        ixt, ity, extras = discrete_point(xk, kt, y, self.miller_madow)
        rng = self.bin_range
        clipped = 0.0 if rng is None else float(np.count_nonzero((t < rng[0]) | (t > rng[1]))) / t.size
        extras.update(n_bins=None if self.bin_size is not None else self.n_bins, bin_size=self.bin_size,
                      bin_range=None if rng is None else [float(rng[0]), float(rng[1])],
                      clipped_fraction=clipped)
        return EstimateResult(ixt, ity, extras)

    def _mutual_information(self, a, b) -> float:
        """I(A;B) in bits with both arrays binned.

        With a fixed range or ``bin_size`` both use the instance's edges; in ``"data"`` mode each
        array is binned on its own global min/max (this does not touch the run's fixed range).
        """
        if self.bin_size is None and self.value_range == "data":
            ka = codes_keys(*_bin_by_range(a, (float(a.min()), float(a.max())), self.n_bins))
            kb = codes_keys(*_bin_by_range(b, (float(b.min()), float(b.max())), self.n_bins))
        else:
            ka, kb = self._keys(a), self._keys(b)
        return mutual_information_keys(ka, kb, self.miller_madow)


def _check_range(value_range, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers or 'data', got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"{name} must satisfy low < high with finite values, got {value_range!r}")
    return lo, hi


def _bin_by_range(t: np.ndarray, value_range, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``floor((t - lo) * n_bins / (hi - lo))`` clipped to ``[0, n_bins - 1]``."""
    lo, hi = value_range
    dtype = np.float32 if t.dtype in (np.float32, np.float16, np.int8, np.uint8, np.int16, np.uint16) \
        else np.float64
    scale = n_bins / (hi - lo) if hi > lo else 1.0
    z = t.astype(dtype, copy=True)
    z -= dtype(lo)
    z *= dtype(scale)
    np.clip(z, 0, n_bins - 1, out=z)  # outside values to the edge bins; floor = truncation for z >= 0
    codes = z.astype(np.uint8 if n_bins <= 256 else np.uint16 if n_bins <= 65536 else np.int64)
    return codes, np.full(t.shape[1], n_bins, np.int64)


def _bin_by_size(t: np.ndarray, bin_size: float) -> tuple[np.ndarray, np.ndarray]:
    """``floor(t / bin_size)``, shifted per column to start at 0."""
    z = np.floor((t.astype(np.float64) if t.dtype == np.float16 else t) / bin_size)  # float16 overflows at 65504
    if np.abs(z).max() >= 2.0 ** 62:
        raise ValueError(f"bin_size={bin_size} is too small for values up to {float(np.abs(t).max())}")
    k = z.astype(np.int64)
    kmin = k.min(axis=0)
    return k - kmin, k.max(axis=0) - kmin + 1
