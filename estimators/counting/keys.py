"""Row keys of discrete arrays: one int64 per row, equal rows <=> equal keys.

* two-valued arrays (±1 BNN codes, {0, 1}): bit-packing, one int64 for d <= 62 columns (exact
  float matrix product with powers of two), else ``np.packbits`` followed by a row hash;
* integer codes with per-column level counts :math:`L_j`: mixed radix
  :math:`k = \\sum_j c_j \\prod_{i<j} L_i` when :math:`\\prod_j L_j < 2^{63}`, else a row hash;
* non-integer values: per-column dense ranks (one sort along the samples), then as above; or, for
  keying the inputs ``x`` (any values), a hash of the raw row bytes (:func:`~estimators.counting.rows.hash_rows`).

Joint variables use combined keys :math:`k_{12} = k_1 \\cdot |K_2| + k_2` (:func:`combine`).
"""
from __future__ import annotations

import math

import numpy as np

from ibtoolkit.codes import pack_pm1_float32
from ibtoolkit.validation import require_finite

from .rows import MAX_KEY, Keys, bincount_ok, hash_rows

__all__ = ["row_keys", "codes_keys", "label_keys", "dense", "combine"]

_F64_EXACT = 1 << 53  # integers below this are exact in float64 (and their partial sums)
_F32_EXACT = 1 << 24
_POW2_F32 = (2.0 ** np.arange(24)).astype(np.float32)


def row_keys(a: np.ndarray, *, max_levels: int | None = None, name: str = "t", check_finite: bool = False) -> Keys:
    """Key the rows of a 2-D array: equal rows get equal keys, different rows different keys.

    Parameters
    ----------
    a : ndarray, shape (N, d)
        Validated (finite) numbers.
    max_levels : int or None
        If given, ``a`` must be discrete: a column with more than ``max_levels`` distinct values
        raises :class:`ValueError` naming it.  If None, any values are keyed (continuous rows by a
        hash of their raw bytes).
    name : str
        Name of the array in error messages.
    check_finite : bool
        Raise the validation's :class:`ValueError` for NaN/inf entries (else ``a`` must already be
        finite).  Free when the array is wide float32 ±1: the blockwise ±1 test proves finiteness.
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x features), got shape {a.shape}")
    n, d = a.shape
    if n == 0 or d == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if a.dtype == np.float32 and d > 24:
        packed = pack_pm1_float32(a, positive_bit=False)
        if packed is not None:  # every entry is exactly ±1: one hashed key per row of sign bits
            return hash_rows(packed)
    if check_finite:
        require_finite(a, name)
    lo, hi = a.min(), a.max()
    if lo == hi:  # one state
        return Keys(np.zeros(n, np.int64), 1, True)
    bits = _two_valued(a, lo, hi)
    if bits is not None:
        return _binary_keys(a, lo, hi, bits)
    ints = _as_integer_codes(a)
    if ints is not None:
        cmin = ints.min(axis=0)
        levels = ints.max(axis=0) - cmin + 1
        if max_levels is None or int(levels.max()) <= max_levels:
            return codes_keys(ints - cmin, levels)
    elif max_levels is None:
        return hash_rows(a)
    codes, levels = _column_ranks(a)
    if max_levels is not None:
        bad = np.flatnonzero(levels > max_levels)
        if bad.size:
            j = int(bad[0])
            raise ValueError(
                f"{name} looks continuous: column {j} has {int(levels[j])} distinct values "
                f"(more than max_levels={max_levels}; {bad.size} of {d} columns exceed it). The exact "
                f"estimator needs discrete codes; use 'binning' or 'kde' for continuous activations, "
                f"or raise max_levels if these really are discrete levels")
    return codes_keys(codes, levels)


def _two_valued(a: np.ndarray, lo, hi) -> np.ndarray | bool | None:
    """If every entry of ``a`` is ``lo`` or ``hi`` (its min and max), the bits ``a == hi``
    (or True when they are not needed), else None."""
    if np.issubdtype(a.dtype, np.integer):
        if int(hi) - int(lo) == 1:
            return True
        if lo == -1 and hi == 1:
            return True if np.count_nonzero(a) == a.size else None  # no zeros
    if a.shape[1] <= 24 and a.dtype == np.float32 and lo == -1 and hi == 1:
        return True if np.count_nonzero(np.abs(a) == 1) == a.size else None
    bits = a == hi
    return bits if np.count_nonzero(bits) + np.count_nonzero(a == lo) == a.size else None


def _binary_keys(a: np.ndarray, lo, hi, bits) -> Keys:
    """Bit-pack a two-valued array (bit 1 for ``hi``); ``bits`` is ``a == hi`` if already computed."""
    n, d = a.shape
    if d <= 24 and a.dtype == np.float32 and lo == -1 and hi == 1:
        # ±1 float32 (the common BNN case): sum_j t_j 2^j = 2 k - (2^d - 1), exact in float32
        s = a @ _POW2_F32[:d]
        codes = ((s + np.float32((1 << d) - 1)) * np.float32(0.5)).astype(np.int64)
        return Keys(codes, 1 << d)
    if not isinstance(bits, np.ndarray):
        bits = a == hi
    if d > 62:
        return hash_rows(np.packbits(bits, axis=1))
    return codes_keys(bits.view(np.uint8), np.full(d, 2, np.int64))


def _as_integer_codes(a: np.ndarray) -> np.ndarray | None:
    """``a`` as int64 if every value is a whole number of magnitude < 2^53, else None."""
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64, copy=False)
    if not np.issubdtype(a.dtype, np.floating):
        return None
    if max(abs(float(a.min())), abs(float(a.max()))) >= _F64_EXACT:
        return None
    r = np.rint(a)
    if not np.array_equal(r, a):
        return None
    return r.astype(np.int64)


def _column_ranks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense per-column ranks of ``a`` (one sort along the samples) and levels per column."""
    order = np.argsort(a, axis=0, kind="stable")
    s = np.take_along_axis(a, order, axis=0)
    ranks = np.zeros(a.shape, np.int64)
    np.cumsum(s[1:] != s[:-1], axis=0, out=ranks[1:])
    levels = ranks[-1] + 1
    codes = np.empty_like(ranks)
    np.put_along_axis(codes, order, ranks, axis=0)
    return codes, levels


def codes_keys(codes: np.ndarray, levels=None) -> Keys:
    """Key rows of non-negative integer codes, column ``j`` taking values in ``[0, levels[j])``.

    Mixed radix :math:`k = \\sum_j c_j \\prod_{i<j} L_i` when :math:`\\prod_j L_j < 2^{63}`
    (computed with an exact float64 product while the key space is below 2^53); otherwise a
    64-bit row hash of the codes with collision check.
    """
    codes = np.asarray(codes)
    n, d = codes.shape
    if levels is None:
        levels = codes.max(axis=0).astype(np.int64) + 1
    levels = [max(int(v), 1) for v in np.asarray(levels).ravel()]
    size = math.prod(levels)
    if size < MAX_KEY:
        weights = np.cumprod([1] + levels[:-1], dtype=np.int64)
        if size < _F64_EXACT:
            dtype = np.float32 if size < _F32_EXACT and codes.itemsize <= 2 else np.float64
            key = (codes.astype(dtype) @ weights.astype(dtype)).astype(np.int64)
        else:
            key = codes.astype(np.int64) @ weights
        return Keys(key, size)
    top = max(levels)
    narrow = np.uint8 if top <= 256 else np.uint16 if top <= 65536 else np.int64
    return hash_rows(codes.astype(narrow, copy=False))


def label_keys(y: np.ndarray) -> Keys:
    """Keys of non-negative integer labels (already validated)."""
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    return Keys(y, int(y.max()) + 1)


def dense(keys: Keys) -> Keys:
    """Relabel keys to ``0 .. m-1`` (m distinct values): ``bincount`` on a small key space, else one sort."""
    if keys.is_dense:
        return keys
    codes = keys.codes
    if bincount_ok(keys.size, codes.shape[0]):
        present = np.bincount(codes, minlength=keys.size) > 0
        mapping = np.cumsum(present) - 1
        return Keys(mapping[codes], int(mapping[-1]) + 1, True)
    order = np.argsort(codes)
    s = codes[order]
    ranks = np.zeros(codes.shape[0], np.int64)
    np.cumsum(s[1:] != s[:-1], out=ranks[1:])
    out = np.empty_like(ranks)
    out[order] = ranks
    return Keys(out, int(ranks[-1]) + 1, True)


def combine(k1: Keys, k2: Keys) -> Keys:
    """Keys of the joint variable (row of ``k1``, row of ``k2``): :math:`k_1 |K_2| + k_2`."""
    if k1.n != k2.n:
        raise ValueError(f"cannot combine keys of {k1.n} and {k2.n} samples")
    if k1.size * k2.size >= MAX_KEY:
        k1, k2 = dense(k1), dense(k2)
    return Keys(k1.codes * np.int64(k2.size) + k2.codes, k1.size * k2.size)
