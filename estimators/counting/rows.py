"""Distinct rows: one 64-bit hash per row, exact grouping, and the :class:`Keys` they give.

A row's raw bytes (``-0.0`` made ``0.0``) are read as little-endian uint64 words
:math:`w_1 .. w_W` and hashed linearly, :math:`h = \\sum_k a_k w_k \\bmod 2^{64}`, with fixed random
odd :math:`a_k`: one integer matrix-vector product hashes every row, and a difference in a single
word never collides (an odd :math:`a_k` is invertible mod :math:`2^{64}`).  Rows are then grouped by
hash and every row is compared with its group's representative; on any difference (a collision)
the exact ``np.unique(axis=0)`` is used instead, so a hash never changes a result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Keys", "hash_rows", "distinct_rows", "key_groups", "bincount_ok", "MAX_KEY"]

MAX_KEY = 1 << 63  # exclusive bound of a non-negative int64 key space
#: odd multipliers of the row hash (:func:`_hash_words`), extended on demand for wider rows
_MULTIPLIERS = np.random.default_rng(0x1B7001).integers(0, 1 << 63, size=1024, dtype=np.uint64) * np.uint64(2) \
    + np.uint64(1)


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


def bincount_ok(size: int, n: int) -> bool:
    """Whether keys in ``[0, size)`` of ``n`` samples are counted by ``np.bincount`` (else by one sort)."""
    return size <= 8 * n + 4096


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


def _unique_rows(words: np.ndarray) -> Keys:
    """Exact fallback after a hash collision: ``np.unique`` over rows."""
    _, inverse = np.unique(words, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return Keys(inverse, int(inverse.max()) + 1, True)
