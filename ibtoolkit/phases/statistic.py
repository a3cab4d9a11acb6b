r"""The threshold-free statistic of a trajectory: how much compression happens while fitting.

With smoothed curves Ĩ(X;T)_i, Ĩ(T;Y)_i over the recorded epochs i = 0..n−1:

* fitting progress :math:`F_i = (\max_{j\le i} Ĩ(T;Y)_j − Ĩ(T;Y)_0) / R`, R = max Ĩ(T;Y) − Ĩ(T;Y)_0,
  non-decreasing from 0 to 1;
* drawdown of I(X;T) below its running peak :math:`G_i = \max_{j\le i} Ĩ(X;T)_j − Ĩ(X;T)_i \ge 0`
  (bits of compression done by epoch i, counted from the highest point so far);

.. math::

    D = \sum_{i=1}^{n-1} (F_i − F_{i−1})\, G_i \quad\text{bits},

the mean drawdown of I(X;T) over the fitting progress: how many bits below its peak I(X;T) sits
while I(T;Y) is still rising.  D = 0 when I(X;T) never falls while fitting (fit first, compress
later, *or* no compression at all), D > 0 when compression overlaps fitting, and it grows with both
the amount and the earliness of that compression.  It needs no threshold and is defined for every
trajectory that fits (R > 0), compressing or not, so seeds without compression enter a comparison
with their D instead of being left out; D is NaN only when R ≤ 0 (no fitting phase to refer to).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["compression_during_fit"]


def compression_during_fit(ixt_smooth, ity_smooth) -> float:
    """D in bits (module docstring) from smoothed I(X;T) and I(T;Y) over the recorded epochs."""
    xs = np.asarray(ixt_smooth, dtype=float)
    ys = np.asarray(ity_smooth, dtype=float)
    rise = float(ys.max() - ys[0])
    if xs.size < 2 or rise <= 0:
        return math.nan
    progress = (np.maximum.accumulate(ys) - ys[0]) / rise
    drawdown = np.maximum.accumulate(xs) - xs
    return float(np.sum(np.diff(progress) * drawdown[1:]))
