"""One layer's trajectory: smoothing, fitting and compression epochs, overlap, verdict.

Definitions (recorded epochs e_0 < ... < e_{n-1}; every threshold is a parameter of
:func:`analyse_trajectory`, defaults in brackets; the full text with formulas is docs/phases.md):

* **Smoothing.**  A centred running median over ``smoothing`` [5] consecutive recorded points, the
  window shrinking symmetrically at the ends (end points kept).  Ĩ denotes smoothed values.
* **Fitting.**  R = max Ĩ(T;Y) − Ĩ(T;Y)_0; ``e_fit`` is the first epoch with
  Ĩ(T;Y) ≥ Ĩ(T;Y)_0 + f·R, f = ``fit_fraction`` [0.9] (e_0 when R ≤ 0).
* **Compression.**  ``e_peak`` = argmax Ĩ(X;T); C = Ĩ(X;T)(e_peak) − Ĩ(X;T)(e_{n-1}).  The layer
  compresses when C ≥ ``min_compression_bits`` [0.1] and C / Ĩ(X;T)(e_peak) ≥
  ``min_compression_fraction`` [0.05].
* **Overlap** ρ = clip((Ĩ(X;T)(e_peak) − Ĩ(X;T)(e_fit)) / C, 0, 1) if e_fit > e_peak else 0;
  **lag** = log10(e_peak + 1) − log10(e_fit + 1).
* **Statistic** D (:func:`~ibtoolkit.phases.statistic.compression_during_fit`), threshold-free.
* **Verdict**: ``"undetermined"`` when a validity gate fires (:mod:`ibtoolkit.phases.gating`, the
  ``reason`` says which); else ``"no compression"``; else ``"simultaneous"`` if ρ ≥
  ``simultaneity_threshold`` [0.5]; else ``"separate"``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .gating import GATE_DEFAULTS, check_gates, gate_reason
from .statistic import compression_during_fit

__all__ = ["PhaseResult", "VERDICTS", "SPEC_DEFAULTS", "smooth", "analyse_trajectory"]

VERDICTS = ("simultaneous", "separate", "no compression", "undetermined")
#: The specification of a verdict: the thresholds the robustness grid varies.
SPEC_DEFAULTS = {"fit_fraction": 0.9, "min_compression_bits": 0.1, "min_compression_fraction": 0.05,
                 "simultaneity_threshold": 0.5, "smoothing": 5}


@dataclass(frozen=True)
class PhaseResult:
    """Phases of one layer's trajectory (definitions in the module docstring).

    ``e_fit``/``e_peak`` are recorded epochs, ``i_fit``/``i_peak`` their positions; ``compression``
    in bits; ``overlap`` NaN when the layer does not compress; ``compression_during_fit`` the
    threshold-free statistic D (bits); ``reason`` says why a verdict is ``undetermined`` ("" else).
    """

    e_fit: float
    e_peak: float
    i_fit: int
    i_peak: int
    compression: float
    compression_fraction: float
    overlap: float
    lag: float
    compression_during_fit: float
    verdict: str
    reason: str
    ity_rise: float
    ixt_peak: float
    ixt_last: float
    n_points: int

    def as_dict(self) -> dict:
        return asdict(self)


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


def check_spec(fit_fraction, min_compression_bits, min_compression_fraction, simultaneity_threshold,
               smoothing) -> None:
    """Refuse thresholds outside their ranges with a ValueError naming the parameter."""
    if not (0.0 < fit_fraction <= 1.0):
        raise ValueError(f"fit_fraction must lie in (0, 1], got {fit_fraction!r}")
    if not (min_compression_bits >= 0 and math.isfinite(min_compression_bits)):
        raise ValueError(f"min_compression_bits must be a finite number >= 0, got {min_compression_bits!r}")
    if not (0.0 <= min_compression_fraction <= 1.0):
        raise ValueError(f"min_compression_fraction must lie in [0, 1], got {min_compression_fraction!r}")
    if not (0.0 < simultaneity_threshold <= 1.0):
        raise ValueError(f"simultaneity_threshold must lie in (0, 1], got {simultaneity_threshold!r}")
    if not isinstance(smoothing, (int, np.integer)) or smoothing < 1 or smoothing % 2 == 0:
        raise ValueError(f"smoothing window must be an odd positive integer, got {smoothing!r}")


def fit_index(ys: np.ndarray, fit_fraction: float) -> tuple[int, float]:
    """(i_fit, R): the first point reaching Ĩ(T;Y)_0 + f·R, and the rise R (0 when none)."""
    rise = float(ys.max() - ys[0])
    if rise <= 0:
        return 0, rise
    target = ys[0] + fit_fraction * rise
    return int(np.argmax(ys >= target - 1e-12 * max(1.0, abs(target)))), rise


def classify(xs: np.ndarray, i_fit: int, min_compression_bits: float, min_compression_fraction: float,
             simultaneity_threshold: float) -> tuple[str, float, float, float, int]:
    """(verdict, overlap, C, C / peak, i_peak) of a smoothed I(X;T) curve, gates not applied."""
    i_peak = int(np.argmax(xs))
    peak, last = float(xs[i_peak]), float(xs[-1])
    compression = peak - last
    fraction = compression / peak if peak > 0 else 0.0
    if not (compression >= min_compression_bits and fraction >= min_compression_fraction and compression > 0):
        return "no compression", math.nan, compression, fraction, i_peak
    done = peak - float(xs[i_fit]) if i_fit > i_peak else 0.0
    overlap = float(np.clip(done / compression, 0.0, 1.0))
    return ("simultaneous" if overlap >= simultaneity_threshold else "separate"), overlap, compression, fraction, i_peak


def analyse_trajectory(epochs, ixt, ity, *, ceiling: float | None = None, ixt_raw=None, n_states=None,
                       n_samples: int | None = None, fit_fraction: float = 0.9, min_compression_bits: float = 0.1,
                       min_compression_fraction: float = 0.05, simultaneity_threshold: float = 0.5,
                       smoothing: int = 5, **gates) -> PhaseResult:
    """Fitting and compression phases of one layer; returns a :class:`PhaseResult`.

    ``epochs`` strictly increasing, ``ixt``/``ity`` in bits, all finite.  ``ceiling`` (log2 of the
    number of distinct inputs), ``ixt_raw`` (unclipped I(X;T) per epoch), ``n_states`` (distinct
    codes per epoch) and ``n_samples`` feed the validity gates when given; ``gates`` are the
    thresholds of :mod:`ibtoolkit.phases.gating` (defaults in :data:`~ibtoolkit.phases.gating.GATE_DEFAULTS`).
    Definitions in the module docstring.
    """
    check_spec(fit_fraction, min_compression_bits, min_compression_fraction, simultaneity_threshold, smoothing)
    gates = check_gates({**GATE_DEFAULTS, **gates})
    e, x, y = _check_trajectory(epochs, ixt, ity)
    xs, ys = smooth(x, smoothing), smooth(y, smoothing)
    i_fit, rise = fit_index(ys, fit_fraction)
    verdict, overlap, compression, fraction, i_peak = classify(xs, i_fit, min_compression_bits,
                                                               min_compression_fraction, simultaneity_threshold)
    reason = gate_reason(e, x, xs, ys, ceiling=ceiling, ixt_raw=ixt_raw, n_states=n_states, n_samples=n_samples,
                         **gates)
    if reason:
        verdict = "undetermined"
    lag = math.log10(e[i_peak] + 1.0) - math.log10(e[i_fit] + 1.0)
    return PhaseResult(e_fit=float(e[i_fit]), e_peak=float(e[i_peak]), i_fit=i_fit, i_peak=i_peak,
                       compression=float(compression), compression_fraction=float(fraction), overlap=overlap,
                       lag=float(lag), compression_during_fit=compression_during_fit(xs, ys), verdict=verdict,
                       reason=reason, ity_rise=rise, ixt_peak=float(xs[i_peak]), ixt_last=float(xs[-1]),
                       n_points=int(e.size))


def unanalysable(verdict: str, reason: str, n_points: int) -> PhaseResult:
    """The result of a trajectory too short to analyse (or whose estimates all failed)."""
    nan = math.nan
    return PhaseResult(e_fit=nan, e_peak=nan, i_fit=-1, i_peak=-1, compression=nan, compression_fraction=nan,
                       overlap=nan, lag=nan, compression_during_fit=nan, verdict=verdict, reason=reason,
                       ity_rise=nan, ixt_peak=nan, ixt_last=nan, n_points=n_points)
