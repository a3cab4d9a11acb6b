"""±1 codes: mapping {0, 1} data to ±1, and bit-packing ±1 arrays (one bit per unit).

Binary networks (Larq's sign quantizers, sign(0) = +1) see ±1 data: :func:`to_pm1` maps {0, 1}
inputs by :math:`x \\mapsto 2x - 1`.  A binary layer's codes :math:`t \\in \\{-1, +1\\}^d` are stored
and counted bit-packed, eight units per byte in ``np.packbits`` order: :func:`pack_pm1_float32` tests
and packs float32 arrays in one pass, :func:`unpack_pm1` inverts the packing.

The one-pass test: a float32 entry is exactly ±1 when its bits, the sign bit aside, are those of
1.0f (0x3F800000); its code is then the sign bit.  Over a block of entries, the bitwise AND of the
raw bit patterns (uint32 view) has every bit that all entries share and the bitwise OR every bit
that any entry has: both equal 0x3F800000 outside the sign bit exactly when every entry is ±1, so two
read-only reductions prove a block all ±1, and finite, without the temporaries of
``(a == 1) | (a == -1)``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["to_pm1", "pack_pm1_float32", "unpack_pm1"]

ABS_BITS = np.uint32(0x7FFFFFFF)      # every bit of a float32 but the sign
ONE_BITS = np.uint32(0x3F800000)      # the bits of 1.0f (and of -1.0f without its sign bit)
BLOCK_ENTRIES = 1 << 18               # entries per block (1 MiB of float32): the block stays in cache
_BIT_VALUES = (2.0 ** np.arange(7, -1, -1)).astype(np.float32)  # 128, 64, ..., 1: packbits' bit order


def to_pm1(x) -> np.ndarray:
    """Map {0, 1} data (or booleans) to ±1 float32: :math:`x \\mapsto 2x - 1` (False/0 to -1, True/1 to +1).

    Larq's sign quantizers send 0 to +1 (sign(0) = +1), so {0, 1} data fed to a binary layer lose
    every 0/1 distinction; the 12-bit dataset of Shwartz-Ziv & Tishby (2017) is mapped first.  Only
    the values 0 and 1 are accepted (anything else, NaN included, is a ``ValueError``): data that are
    already ±1, or continuous, need no mapping, and thresholding them here would hide that.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"to_pm1 needs a numeric or boolean array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("to_pm1: x is empty")
    if arr.dtype != bool:
        bad = ~((arr == 0) | (arr == 1))
        if bad.any():
            raise ValueError(f"to_pm1 maps {{0, 1}} data to ±1, but x holds {int(bad.sum())} other value(s), "
                             f"e.g. {arr[bad].ravel()[0]!r}: x must hold only 0 and 1 (already ±1? then it "
                             f"needs no mapping)")
    return (2 * arr.astype(np.float32) - 1).astype(np.float32)


def unpack_pm1(packed: np.ndarray, width: int) -> np.ndarray:
    """Inverse of ``np.packbits(t > 0, axis=-1)`` (:func:`pack_pm1_float32` with ``positive_bit=True``)
    over a stack (..., N, ceil(d/8)) uint8 -> (..., N, d) float32 ±1: :math:`t = 2b - 1` for each bit b."""
    bits = np.unpackbits(np.ascontiguousarray(packed).reshape(-1)).reshape(packed.shape[:-1] + (-1,))
    out = bits[..., :width].astype(np.float32)
    out *= 2.0
    out -= 1.0
    return out


def pack_pm1_float32(a: np.ndarray, positive_bit: bool = True) -> np.ndarray | None:
    """Bit-pack each row of the float32 array ``a`` (N, d) if every entry is exactly +1 or -1, else None.

    Returns uint8 (N, ceil(d/8)), bits in ``np.packbits`` order, the padding bits of a row's last byte
    zero: ``np.packbits(a > 0, axis=1)`` with ``positive_bit=True`` (the activation store's format) and
    ``np.packbits(a < 0, axis=1)`` (the sign bits) with ``positive_bit=False``.  One pass in
    cache-sized blocks of rows; it stops at the first block holding any other value (0, -0, NaN, inf,
    1 ± one ulp...), so arrays that are not ±1 cost one block.
    """
    if a.dtype != np.float32 or a.ndim != 2:
        raise ValueError(f"pack_pm1_float32 needs a 2-D float32 array, got {a.dtype} of shape {a.shape}")
    n, d = a.shape
    a = np.ascontiguousarray(a)
    u = a.view(np.uint32)
    nbytes = (d + 7) // 8
    rows = max(1, BLOCK_ENTRIES // max(d, 1))
    # narrow rows that do not fill their bytes (the 12-10-7-5-4-3-2 net): each byte is one BLAS
    # product; other widths: rows padded to whole bytes with False bits, so that one flat packbits
    # packs every row (packbits along axis 1 is slower at small d); ufuncs write their contiguous
    # result, a copy pads it (writing through the strided view with out= is slower still)
    by_product = d < 16 and d % 8 != 0
    padded = np.zeros((min(rows, n), nbytes * 8), bool) if d % 8 and not by_product else None
    packed = np.empty((n, nbytes), np.uint8)
    for start in range(0, n, rows):  # loop over blocks of rows, not samples
        block = u[start:start + rows]
        r = block.shape[0]
        if ((np.bitwise_and.reduce(block, axis=None) & ABS_BITS) != ONE_BITS
                or (np.bitwise_or.reduce(block, axis=None) & ABS_BITS) != ONE_BITS):
            return None
        if by_product:
            _pack_by_product(a[start:start + r], positive_bit, packed[start:start + r])
            continue
        bits = np.greater(a[start:start + r], 0) if positive_bit else np.signbit(a[start:start + r])
        if padded is not None:
            padded[:r, :d] = bits
            bits = padded[:r]
        packed[start:start + r] = np.packbits(bits.reshape(-1)).reshape(r, nbytes)
    return packed


def _pack_by_product(a: np.ndarray, positive_bit: bool, out: np.ndarray) -> None:
    """Pack ±1 rows of at most 16 columns into ``out`` by one matrix-vector product per byte.

    With bit values :math:`w_k = 2^{7-k}` and entries :math:`a_k = \\pm 1`, the byte of the bits
    :math:`b_k = [a_k > 0]` is :math:`\\sum_k w_k b_k = (a \\cdot w + \\sum_k w_k) / 2` (and of
    :math:`[a_k < 0]`, :math:`(\\sum_k w_k - a \\cdot w) / 2`): integers below 2^9, exact in float32
    whatever the order of the sums (``np.packbits`` on a padded copy costs more at these widths).
    """
    for j in range(out.shape[1]):
        w = _BIT_VALUES[:min(8, a.shape[1] - 8 * j)]
        s = a[:, 8 * j:8 * j + w.size] @ w
        if positive_bit:
            s += w.sum()
            s *= 0.5
        else:
            s -= w.sum()
            s *= -0.5
        out[:, j] = s
