"""Counting core of the discrete estimators (``exact``, ``binning``) and the row grouping all four share.

Every plug-in quantity of the information plane reduces to counting distinct rows.  A discrete
array ``a`` of shape (N, d) is turned into **one int64 key per row** (equal rows <=> equal keys),
and entropies are computed from the counts of those keys:

.. math::

    \\hat H(K) = -\\sum_k \\frac{n_k}{N} \\log_2 \\frac{n_k}{N}
              = \\log_2 N - \\frac{1}{N} \\sum_k n_k \\log_2 n_k,

optionally with the Miller–Madow bias correction (Miller, 1955)
:math:`\\hat H_{MM} = \\hat H + (m - 1) / (2 N \\ln 2)`, ``m`` the number of non-empty cells.
Joint entropies use combined keys :math:`k_{12} = k_1 \\cdot |K_2| + k_2`.

Row keys
--------
* two-valued arrays (±1 BNN codes, {0, 1}): bit-packing, one int64 for d <= 62 columns (exact
  float matrix product with powers of two), else ``np.packbits`` followed by a 64-bit row hash;
* integer codes with per-column level counts :math:`L_j`: mixed radix
  :math:`k = \\sum_j c_j \\prod_{i<j} L_i` when :math:`\\prod_j L_j < 2^{63}`, else a row hash;
* non-integer values: per-column dense ranks (one sort along the samples), then as above; or, for
  keying the inputs ``x`` (any values), a hash of the raw row bytes.

Every hash is followed by a collision check (rows with equal hashes are compared word by word);
on a collision the exact ``np.unique(axis=0)`` is used instead, so a hash never changes a result.

Counting uses ``np.bincount`` when the key space is small (at most ``8 N + 4096`` cells), otherwise
one sort.  No Python loop runs over samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ibtoolkit._bits import pack_pm1_float32
from ibtoolkit.validation import require_finite

__all__ = ["Keys", "InputKeys", "InputKeyCache", "InputGroups", "row_keys", "codes_keys", "hash_rows",
           "key_groups", "distinct_rows", "label_keys",
           "dense", "combine", "counts", "entropy_from_counts", "entropy", "joint_entropy", "mutual_information_keys",
           "discrete_point", "clamp_noise", "LN2", "NOISE_TOL"]

LN2 = math.log(2.0)
#: Largest deviation outside a mathematical bound that is treated as float rounding and clamped.
NOISE_TOL = 1e-9
_MAX_KEY = 1 << 63  # exclusive bound of a non-negative int64 key space
_F64_EXACT = 1 << 53  # integers below this are exact in float64 (and their partial sums)
_F32_EXACT = 1 << 24

_POW2_F32 = (2.0 ** np.arange(24)).astype(np.float32)
#: odd multipliers of the row hash (:func:`_hash_words`), extended on demand for wider rows
_MULTIPLIERS = np.random.default_rng(0x1B7001).integers(0, 1 << 63, size=1024, dtype=np.uint64) * np.uint64(2) \
    + np.uint64(1)


# ----------------------------------------------------------------------------------------------
# keys
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Keys:
    """One non-negative int64 key per sample.

    Attributes
    ----------
    codes : ndarray of int64, shape (N,)
        Keys in ``[0, size)``; two samples have the same key iff their rows are equal.
    size : int
        Exclusive upper bound of the keys (the size of the key space, a Python int).
    is_dense : bool
        True when the keys are exactly ``0 .. size-1`` with every value used.
    """

    codes: np.ndarray
    size: int
    is_dense: bool = False

    @property
    def n(self) -> int:
        return int(self.codes.shape[0])


def _bincount_ok(size: int, n: int) -> bool:
    return size <= 8 * n + 4096


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
                f"estimator needs discrete codes; use the 'binning' estimator for continuous activations, "
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
    if size < _MAX_KEY:
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


def _row_words(a: np.ndarray) -> np.ndarray:
    """The raw bytes of each row as little-endian uint64 words, zero-padded: shape (N, W)."""
    a = np.ascontiguousarray(a)
    n = a.shape[0]
    raw = a.view(np.uint8).reshape(n, -1)
    nbytes = raw.shape[1]
    if nbytes % 8:
        padded = np.zeros((n, nbytes + 8 - nbytes % 8), np.uint8)
        padded[:, :nbytes] = raw
        raw = padded
    return raw.view("<u8")


def _hash_words(words: np.ndarray) -> np.ndarray:
    """64-bit linear hash of each row of uint64 words: :math:`h = \\sum_k a_k w_k \\bmod 2^{64}`.

    The :math:`a_k` are fixed random odd integers (one per word position), so one integer
    matrix-vector product hashes every row; a difference in a single word never collides (an odd
    :math:`a_k` is invertible mod :math:`2^{64}`).  Callers check collisions exactly.
    """
    return words @ _multipliers(words.shape[1])


def _multipliers(width: int) -> np.ndarray:
    global _MULTIPLIERS
    if _MULTIPLIERS.size < width:
        rng = np.random.default_rng([0x1B7001, width])
        more = rng.integers(0, 1 << 63, size=width - _MULTIPLIERS.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        _MULTIPLIERS = np.concatenate([_MULTIPLIERS, more])
    return _MULTIPLIERS[:width]


def hash_rows(a: np.ndarray) -> Keys:
    """Dense keys of the rows of ``a`` by a 64-bit hash of their raw bytes, with collision check.

    Float rows are keyed by value (``-0.0`` and ``0.0`` are the same row).  The result is exact:
    every row is compared with the representative of its hash group; on any difference (a
    collision) the keys come from ``np.unique(axis=0)`` instead.
    """
    _, inverse, counts_ = distinct_rows(a)
    return Keys(inverse, int(counts_.size), True)


def distinct_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of ``a`` (N, d): ``(first, inverse, counts)`` with ``a[first[inverse]] == a`` row by
    row and ``counts[u]`` the multiplicity of distinct row u.

    Rows are compared by value (``-0.0`` equals ``0.0``): grouped by the 64-bit hash of their bytes
    (:func:`_hash_words`), then every row is compared with its group's representative, and on any
    difference (a hash collision) grouped by the exact ``np.unique(axis=0)`` instead.  When the
    hashes are all different (one sort shows it), so are the rows, and the result is simply
    ``(arange(N), arange(N), ones(N))``, without the argsort and scatter of :func:`key_groups`
    (the common case of continuous or wide rows).
    """
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.floating):
        a = a + a.dtype.type(0.0)  # -0.0 -> +0.0, a fresh contiguous copy
    words = _row_words(a)
    hashes = _hash_words(words)
    ordered = np.sort(hashes)
    if not np.any(ordered[1:] == ordered[:-1]):  # different hashes, different rows: all distinct
        index = np.arange(hashes.size, dtype=np.int64)
        return index, index.copy(), np.ones(hashes.size, np.int64)
    first, inverse, counts_ = key_groups(hashes)
    if counts_.size < inverse.size and not np.array_equal(words[first[inverse]], words):
        first, inverse, counts_ = key_groups(_unique_rows(words).codes)  # a hash collision: exact fallback
    return first, inverse, counts_


def key_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, inverse, counts)`` of a 1-D key array: for each distinct key (in ascending order) the
    index of its first sample and its number of samples, and for each sample its group index."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    new = np.empty(ordered.size, dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    inverse = np.empty(ordered.size, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[starts].astype(np.int64), inverse, np.diff(np.append(starts, ordered.size)).astype(np.int64)


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


def _unique_rows(words: np.ndarray) -> Keys:
    """Exact fallback after a hash collision: ``np.unique`` over rows."""
    _, inverse = np.unique(words, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return Keys(inverse, int(inverse.max()) + 1, True)


def label_keys(y: np.ndarray) -> Keys:
    """Keys of non-negative integer labels (already validated)."""
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    return Keys(y, int(y.max()) + 1)


# ----------------------------------------------------------------------------------------------
# relabelling, joint keys, counts, entropies
# ----------------------------------------------------------------------------------------------
def dense(keys: Keys) -> Keys:
    """Relabel keys to ``0 .. m-1`` (m distinct values): ``bincount`` on a small key space, else one sort."""
    if keys.is_dense:
        return keys
    codes = keys.codes
    if _bincount_ok(keys.size, codes.shape[0]):
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
    if k1.size * k2.size >= _MAX_KEY:
        k1, k2 = dense(k1), dense(k2)
    return Keys(k1.codes * np.int64(k2.size) + k2.codes, k1.size * k2.size)


def counts(keys: Keys) -> np.ndarray:
    """Counts of the distinct keys (only non-empty cells), int64."""
    codes = keys.codes
    if _bincount_ok(keys.size, codes.shape[0]):
        c = np.bincount(codes)
        return c if keys.is_dense else c[c > 0]
    s = np.sort(codes)
    edges = np.flatnonzero(s[1:] != s[:-1]) + 1
    return np.diff(np.concatenate(([0], edges, [s.shape[0]])))


def _entropy_bits(c: np.ndarray, miller_madow: bool) -> float:
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
    return _entropy_bits(c, miller_madow)


def entropy(keys: Keys, miller_madow: bool = False) -> float:
    """Plug-in (optionally Miller–Madow) entropy in bits of the keyed variable."""
    return _entropy_bits(counts(keys), miller_madow)


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
    ha, hb = _entropy_bits(ca, miller_madow), _entropy_bits(cb, miller_madow)
    hab = entropy(combine(ka, kb), miller_madow)
    return clamp_noise(ha + hb - hab, 0.0, min(ha, hb))


# ----------------------------------------------------------------------------------------------
# the inputs x: keyed once per estimator instance
# ----------------------------------------------------------------------------------------------
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
    ``saturated``.  Values are clamped into their bounds only by float noise (:func:`clamp_noise`).
    """
    if kt.n != xk.keys.n or y.shape[0] != kt.n:
        raise ValueError(f"x, t and y must have the same number of samples, got {xk.keys.n}, {kt.n}, {y.shape[0]}")
    ky = label_keys(y)
    ct = counts(kt)
    h_t = _entropy_bits(ct, miller_madow)
    h_y = _entropy_bits(counts(ky), miller_madow)
    # every row of t distinct: each joint cell (x, t) or (t, y) holds one sample, like each cell of
    # t, so H(X,T) = H(T,Y) = H(T) (the same counts, hence the same number), no combined keys needed
    t_distinct = ct.shape[0] == kt.n
    if xk.all_distinct:
        h_t_given_x = 0.0
    else:
        h_x = _entropy_bits(xk.counts, miller_madow)
        h_t_given_x = (h_t if t_distinct else entropy(combine(xk.keys, kt), miller_madow)) - h_x
    ceiling = xk.ceiling
    ixt = clamp_noise(h_t - h_t_given_x, 0.0, ceiling)
    h_ty = h_t if t_distinct else entropy(combine(kt, ky), miller_madow)
    ity = clamp_noise(h_t + h_y - h_ty, 0.0, min(h_t, h_y))
    extras = {"n_states": int(ct.shape[0]), "h_t": h_t, "h_y": h_y, "ixt_ceiling": ceiling,
              "saturated": bool(ixt >= ceiling - NOISE_TOL)}
    return ixt, ity, extras
