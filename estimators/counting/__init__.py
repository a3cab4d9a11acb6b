"""Counting core of the discrete estimators (``exact``, ``binning``) and the row grouping all four share.

Public helpers for estimator authors.  Every plug-in quantity of the information plane reduces to
counting distinct rows: a discrete array of shape (N, d) becomes **one int64 key per row** (equal
rows <=> equal keys; :mod:`~estimators.counting.keys`, :mod:`~estimators.counting.rows`), and
entropies come from the counts of those keys (:mod:`~estimators.counting.entropy`):

.. math::

    \\hat H(K) = \\log_2 N - \\frac{1}{N} \\sum_k n_k \\log_2 n_k,
    \\qquad I(A;B) = H(A) + H(B) - H(A,B),

optionally with the Miller–Madow correction :math:`(m - 1) / (2 N \\ln 2)` (Miller, 1955).  The
inputs ``x`` of a run are grouped and keyed once per estimator instance
(:mod:`~estimators.counting.inputs`).  No Python loop runs over samples; every hash is checked for
collisions, so a hash never changes a result.
"""
from .entropy import (NOISE_TOL, clamp_noise, counts, entropy, entropy_bits, entropy_from_counts, joint_entropy,
                      mutual_information_keys)
from .inputs import InputGroups, InputKeyCache, InputKeys, discrete_point
from .keys import codes_keys, combine, dense, label_keys, row_keys
from .rows import Keys, distinct_rows, hash_rows, key_groups

__all__ = ["Keys", "InputKeys", "InputKeyCache", "InputGroups", "row_keys", "codes_keys", "hash_rows",
           "key_groups", "distinct_rows", "label_keys", "dense", "combine", "counts", "entropy_bits",
           "entropy_from_counts", "entropy", "joint_entropy", "mutual_information_keys", "discrete_point",
           "clamp_noise", "NOISE_TOL"]
