"""Tests of the counting core (the package estimators/counting/) against brute-force references."""
import math
from collections import Counter

import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (sets the Keras mode before anything else)
from estimators import counting as C
from estimators.counting import rows as counting_rows
from ibtoolkit import codes as bits
from ibtoolkit.codes import pack_pm1_float32


def first_index_of_equal(rows):
    """Brute force: for every row, the index of the first row equal to it (dict of tuples)."""
    seen, out = {}, []
    for i, r in enumerate(map(tuple, np.asarray(rows).tolist())):
        out.append(seen.setdefault(r, i))
    return np.array(out)


def first_index_of_key(codes):
    seen, out = {}, []
    for i, k in enumerate(codes.tolist()):
        out.append(seen.setdefault(k, i))
    return np.array(out)


def brute_entropy(rows):
    n = len(rows)
    cnt = Counter(map(tuple, np.asarray(rows).tolist()))
    return -sum(c / n * math.log2(c / n) for c in cnt.values())


def assert_same_partition(keys, rows):
    assert keys.codes.dtype == np.int64
    assert keys.codes.min() >= 0 and keys.codes.max() < keys.size
    np.testing.assert_array_equal(first_index_of_key(keys.codes), first_index_of_equal(rows))


def _pm1(rng, n, d, dtype=np.float32, prototypes=None):
    """±1 rows; with ``prototypes`` drawn from that many distinct rows (so rows repeat)."""
    if prototypes is None:
        return np.where(rng.random((n, d)) < 0.5, -1, 1).astype(dtype)
    base = np.where(rng.random((prototypes, d)) < 0.5, -1, 1).astype(dtype)
    return base[rng.integers(0, prototypes, n)]


@pytest.mark.parametrize("d", [1, 3, 10, 24, 25, 40, 53, 62, 63, 200])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
def test_binary_rows_keyed_exactly(rng, d, dtype):
    t = _pm1(rng, 600, d, dtype, prototypes=150)
    assert_same_partition(C.row_keys(t, max_levels=256), t)
    zero_one = (t > 0).astype(dtype)
    assert_same_partition(C.row_keys(zero_one, max_levels=256), zero_one)


def test_binary_small_width_is_a_bit_pack(rng):
    t = _pm1(rng, 100, 10)
    keys = C.row_keys(t)
    expected = ((t > 0).astype(np.int64) << np.arange(10)).sum(axis=1)
    np.testing.assert_array_equal(keys.codes, expected)
    assert keys.size == 1024


def test_constant_array_is_one_state():
    keys = C.row_keys(np.full((7, 3), 0.5))
    np.testing.assert_array_equal(keys.codes, 0)
    assert C.counts(keys).tolist() == [7]


@pytest.mark.parametrize("levels", [3, 7, 200])
@pytest.mark.parametrize("d", [2, 12, 40])
def test_integer_codes_mixed_radix_and_hash(rng, levels, d):
    base = rng.integers(-levels // 2, levels - levels // 2, size=(100, d))
    a = base[rng.integers(0, 100, 500)]
    assert_same_partition(C.row_keys(a, max_levels=256), a)
    assert_same_partition(C.row_keys(a.astype(np.float32)), a)


def test_non_integer_discrete_values_use_column_ranks(rng):
    a = rng.integers(0, 5, size=(400, 6)) / 7.0 - 0.3  # 5 non-integer levels per column
    assert_same_partition(C.row_keys(a, max_levels=5), a)
    with pytest.raises(ValueError, match=r"column 0 has 5 distinct values.*max_levels=4.*binning"):
        C.row_keys(a, max_levels=4)


def test_continuous_rows_hash_by_value(rng):
    base = rng.standard_normal((50, 5))
    a = base[rng.integers(0, 50, 300)]
    a[0, 0], a[1] = 0.0, a[0]
    a[1, 0] = -0.0  # same value, other bytes
    keys = C.row_keys(a)
    assert_same_partition(keys, a)
    assert keys.codes[0] == keys.codes[1]


def test_hash_collision_falls_back_to_exact_unique(rng, monkeypatch):
    a = _pm1(rng, 300, 100, prototypes=40)
    monkeypatch.setattr(counting_rows, "_hash_words", lambda words: np.zeros(words.shape[0], np.uint64))
    keys = C.row_keys(a)
    assert_same_partition(keys, a)
    assert keys.size == len({tuple(r) for r in a.tolist()})


def test_hash_path_entropy_equals_brute_force_at_scale(rng):
    """d = 200, N = 10 000 (hash keys) against a Counter over tuples."""
    t = _pm1(rng, 10_000, 200, prototypes=3000)
    keys = C.row_keys(t, max_levels=256)
    assert C.entropy(keys) == pytest.approx(brute_entropy(t), abs=1e-9)
    assert C.counts(keys).size == len({tuple(r) for r in t.tolist()})


def test_counts_bincount_and_sort_paths_agree(rng):
    codes = rng.integers(0, 50, 1000)
    small = C.Keys(codes, 50)
    large = C.Keys(codes * 10 ** 12, 50 * 10 ** 12)  # too large for bincount -> sort
    assert sorted(C.counts(small).tolist()) == sorted(C.counts(large).tolist()) \
        == sorted(Counter(codes.tolist()).values())
    for k in (small, large):
        d = C.dense(k)
        assert d.is_dense and d.size == len(set(codes.tolist()))
        np.testing.assert_array_equal(first_index_of_key(d.codes), first_index_of_key(codes))


def test_joint_keys_are_the_pairs(rng):
    a = rng.integers(0, 4, 500)
    b = rng.integers(0, 3, 500)
    for ka, kb in [(C.Keys(a, 4), C.Keys(b, 3)), (C.Keys(a, 2 ** 40), C.Keys(b, 2 ** 40))]:
        joint = C.combine(ka, kb)
        assert C.joint_entropy(ka, kb) == pytest.approx(brute_entropy(np.stack([a, b], axis=1)), abs=1e-12)
        np.testing.assert_array_equal(first_index_of_key(joint.codes),
                                      first_index_of_equal(np.stack([a, b], axis=1)))


def test_entropy_from_counts_plug_in_and_miller_madow():
    assert C.entropy_from_counts([5, 5, 5, 5]) == pytest.approx(2.0, abs=1e-12)
    c = [3, 1, 0]
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert C.entropy_from_counts(c) == pytest.approx(h, abs=1e-12)
    # Miller-Madow: + (m - 1) / (2 N ln 2), m = 2 non-empty cells, N = 4
    assert C.entropy_from_counts(c, miller_madow=True) == pytest.approx(h + 1 / (8 * math.log(2)), abs=1e-12)
    assert C.entropy_from_counts([7]) == 0.0


@pytest.mark.parametrize("bad, match", [([], "non-empty"), ([[1, 2]], "1-D"), ([1, -1], "non-negative"),
                                        ([0, 0], "zero"), ([1.5, 2], "whole"), ([np.nan], "NaN")])
def test_entropy_from_counts_rejects_bad_counts(bad, match):
    with pytest.raises(ValueError, match=match):
        C.entropy_from_counts(bad)


def test_clamp_noise_only_clamps_float_noise():
    assert C.clamp_noise(-1e-12, 0.0, 3.0) == 0.0
    assert C.clamp_noise(3.0 + 1e-12, 0.0, 3.0) == 3.0
    assert C.clamp_noise(-0.1, 0.0, 3.0) == -0.1
    assert C.clamp_noise(3.5, 0.0, 3.0) == 3.5


def test_input_key_cache_reuses_only_equal_inputs(rng):
    cache = C.InputKeyCache()
    x = _pm1(rng, 200, 12)
    first = cache.get(x)
    assert cache.get(x) is first                # same object
    assert cache.get(x.copy()) is first         # equal copy
    x2 = x.copy()
    x2[5] = x2[0]                               # now rows 0 and 5 coincide
    second = cache.get(x2)
    assert second is not first
    assert_same_partition(second.keys, x2)
    assert second.n_distinct == len({tuple(r) for r in x2.tolist()})
    continuous = rng.standard_normal((50, 3))
    info = cache.get(continuous)
    assert info.all_distinct and info.ceiling == pytest.approx(math.log2(50))


@pytest.mark.parametrize("odd", [0.5, 0.0, -0.0, 1.0000001, -1.0000001, 0.99999994, -0.99999994, 3.0, -2.0,
                                 np.float32(1e-45), np.uint32(0x7FC00001).view(np.float32)])
@pytest.mark.parametrize("where", [(0, 0), (1500, 37), (-1, -1)])   # first, a middle and the last block
def test_wide_float32_pm1_fast_path_falls_back_on_any_other_value(rng, odd, where):
    """The blockwise ±1 path of wide float32 rows must hand any array holding one other value,
    in any block, to the general path, which then keys it exactly.  The values include those
    whose bits differ from ±1.0f in one mantissa bit either way, a denormal and a NaN payload."""
    t = _pm1(rng, 3000, 100, prototypes=400)
    assert pack_pm1_float32(t, positive_bit=False) is not None
    t[where] = odd
    assert pack_pm1_float32(t, positive_bit=False) is None
    if np.isfinite(odd):
        assert_same_partition(C.row_keys(t, max_levels=256), t)


@pytest.mark.parametrize("n,d", [(1000, 25), (777, 100), (130, 1024), (64, 33), (4096, 10), (50, 3), (9, 8), (300, 15), (7, 1)])
@pytest.mark.parametrize("block_entries", [1000, 1 << 18])
def test_wide_float32_pm1_blocks_equal_whole_array_packing(rng, monkeypatch, n, d, block_entries):
    """Blockwise packing (widths not a multiple of 8, N not a multiple of the block rows, blocks of
    one row) gives the bits of ``np.packbits(t < 0)`` (the estimators' keys) and ``np.packbits(t > 0)``
    (the store's format, zero padding bits) on the whole array, and the same keys."""
    monkeypatch.setattr(bits, "BLOCK_ENTRIES", block_entries)
    t = _pm1(rng, n, d, prototypes=n // 3)
    np.testing.assert_array_equal(pack_pm1_float32(t, positive_bit=False), np.packbits(t < 0, axis=1))
    np.testing.assert_array_equal(pack_pm1_float32(t), np.packbits(t > 0, axis=1))
    assert_same_partition(C.row_keys(t, max_levels=256), t)
    assert_same_partition(C.row_keys(t.astype(np.int8), max_levels=256), t)


def test_distinct_rows_of_all_distinct_rows_is_the_identity(rng):
    """All hashes different: no grouping is needed, every row is its own group; one repeat
    brings back the general grouping."""
    t = rng.standard_normal((500, 7))
    first, inverse, counts = C.distinct_rows(t)
    np.testing.assert_array_equal(first, np.arange(500))
    np.testing.assert_array_equal(inverse, np.arange(500))
    np.testing.assert_array_equal(counts, np.ones(500))
    t[400] = t[3]
    first, inverse, counts = C.distinct_rows(t)
    assert counts.size == 499 and inverse[400] == inverse[3]
    np.testing.assert_array_equal(t[first[inverse]], t)


@pytest.mark.parametrize("miller_madow", [False, True])
def test_discrete_point_with_all_distinct_t_and_duplicate_inputs(rng, miller_madow):
    """Every row of t distinct (wide codes): I(X;T) = H(T) - (H(X,T) - H(X)) = H(X) and
    I(T;Y) = H(Y), Miller-Madow or not (each joint cell holds one sample, like each cell of t)."""
    n = 600
    x = rng.integers(0, 2, (n, 8)).astype(np.float64)          # 256 possible inputs: duplicates
    t = _pm1(rng, n, 100)
    y = rng.integers(0, 3, n)
    kt = C.row_keys(t, max_levels=256)
    assert C.counts(kt).size == n
    xk = C.InputKeyCache().get(x)
    assert not xk.all_distinct
    ixt, ity, extras = C.discrete_point(xk, kt, y, miller_madow)

    def brute(rows):
        h = brute_entropy(rows)
        return h + (len({tuple(r) for r in np.asarray(rows).reshape(n, -1).tolist()}) - 1) / (2 * n * math.log(2)) \
            if miller_madow else h

    if miller_madow:  # the corrected values, above the ceilings log2(distinct x) and plug-in H(Y), are clipped
        assert extras["ixt_raw"] == pytest.approx(brute(x), abs=1e-9)
        assert extras["ity_raw"] == pytest.approx(brute(y[:, None]), abs=1e-9)
        assert ixt == pytest.approx(min(brute(x), xk.ceiling), abs=1e-12) and ixt <= xk.ceiling
        assert ity == pytest.approx(brute_entropy(y[:, None]), abs=1e-9)
    else:
        assert ixt == pytest.approx(brute(x), abs=1e-9)
        assert ity == pytest.approx(brute(y[:, None]), abs=1e-9)
    assert extras["h_t"] == pytest.approx(brute(t), abs=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_wide_float32_pm1_fast_path_refuses_non_finite(rng, bad):
    t = _pm1(rng, 3000, 100)
    t[1234, 56] = bad
    assert pack_pm1_float32(t, positive_bit=False) is None
    assert pack_pm1_float32(t) is None
