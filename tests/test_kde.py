"""Tests of the ``kde`` estimator (Kolchinsky–Tracey bounds, Saxe et al. 2018) against ground truth.

Reference: a direct dense N×N float64 numpy implementation written here independently (pairwise
differences by broadcasting, scipy's logsumexp, explicit loops over classes and distinct inputs,
entropies in nats as in Saxe et al.'s ``entropy_estimator_kl``/``_bd``), converted to bits by / ln 2.
"""
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp

import ibtoolkit
from ibtoolkit.estimator import LN2
from estimators.counting import distinct_rows
from estimators.counting import rows as counting_rows
from estimators import kde as kde_module
from estimators.kde import KDEEstimator
from conftest import bit_patterns

TOL_BITS = 1e-4


# ----------------------------------------------------------------------------- reference (nats)
def _mixture_entropy(t, var):
    """Saxe et al.'s pairwise-distance entropy of the mixture of N(t_j, var I), in nats."""
    n, d = t.shape
    dist = ((t[:, None, :] - t[None, :, :]) ** 2).sum(-1)
    lprobs = logsumexp(-dist / (2 * var), axis=1) - math.log(n) - 0.5 * d * math.log(2 * math.pi * var)
    return d / 2 - lprobs.mean()


def reference_nats(x, t, y, var):
    """(ixt_upper, ixt_lower, ity_upper, ity_lower, h_upper, h_lower) in nats."""
    t = np.asarray(t, dtype=np.float64)
    d = t.shape[1]

    def upper(s):
        return _mixture_entropy(s, var)

    def lower(s):  # Bhattacharyya: kernel width 4 var, then shift by d/2 ln(1/4)
        return _mixture_entropy(s, 4 * var) + 0.5 * d * math.log(0.25)

    out = {}
    _, xinv = np.unique(x, axis=0, return_inverse=True)
    xinv = xinv.ravel()
    for name, h in (("upper", upper), ("lower", lower)):
        h_t = h(t)
        h_given_x = sum((xinv == u).mean() * h(t[xinv == u]) for u in np.unique(xinv))
        h_given_y = sum((y == c).mean() * h(t[y == c]) for c in np.unique(y))
        out[f"ixt_{name}"] = h_t - h_given_x
        out[f"ity_{name}"] = h_t - h_given_y
        out[f"h_{name}"] = h_t
    return out


def _assert_matches(result, ref):
    pairs = {"ixt": result.ixt, "ity": result.ity, "ixt_lower": result.extras["ixt_lower"],
             "ity_lower": result.extras["ity_lower"], "h_upper": result.extras["h_upper"],
             "h_lower": result.extras["h_lower"]}
    names = {"ixt": "ixt_upper", "ity": "ity_upper"}
    for key, value in pairs.items():
        assert value == pytest.approx(ref[names.get(key, key)] / LN2, abs=TOL_BITS), key


# ----------------------------------------------------------------------------- against the reference
@pytest.mark.parametrize("chunk_size,var", [(1024, 0.1), (7, 0.1), (13, 1e-3)])
def test_matches_dense_float64_reference_distinct_inputs(rng, chunk_size, var):
    n = 90
    x = rng.normal(size=(n, 4))
    t = np.tanh(x @ rng.normal(size=(4, 3)))
    y = rng.integers(0, 3, n)
    result = KDEEstimator(noise_variance=var, chunk_size=chunk_size).estimate(x, t, y)
    _assert_matches(result, reference_nats(x, t, y, var))


def test_matches_reference_with_duplicate_inputs_deterministic_t(rng):
    base = bit_patterns(16, 4, dtype=np.float64)
    x = base[rng.integers(0, 16, 80)]                       # duplicates, some patterns missing
    t = np.tanh(x @ rng.normal(size=(4, 5)) - 0.3)          # t is a function of x
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    result = KDEEstimator(chunk_size=16).estimate(x, t, y)
    _assert_matches(result, reference_nats(x, t, y, 0.1))
    assert result.extras["t_function_of_x"] is True
    assert result.extras["ixt_ceiling"] == pytest.approx(math.log2(len(np.unique(x, axis=0))))


def test_matches_reference_when_t_varies_within_an_input(rng):
    """H(T+e | X) > h(e): rows sharing an input have different t (e.g. a stochastic layer)."""
    x = bit_patterns(8, 3, dtype=np.float64)[np.repeat(np.arange(8), 6)]
    t = rng.normal(size=(48, 2))
    y = rng.integers(0, 2, 48)
    result = KDEEstimator(chunk_size=10).estimate(x, t, y)
    _assert_matches(result, reference_nats(x, t, y, 0.1))
    assert result.extras["t_function_of_x"] is False


def test_single_input_carries_no_information(rng):
    x = np.zeros((50, 3))
    t = rng.normal(size=(50, 4))
    y = rng.integers(0, 2, 50)
    result = KDEEstimator().estimate(x, t, y)
    assert result.ixt == pytest.approx(0.0, abs=1e-6)
    assert result.extras["ixt_lower"] == pytest.approx(0.0, abs=1e-6)
    assert result.extras["ixt_ceiling"] == 0.0


# ----------------------------------------------------------------------------- repeated rows of T
def _units_seen(est):
    """Wrap the instance's compiled kernels to record how many rows (units) each call received."""
    seen, build = [], est._function

    def spy(with_groups, with_cut):
        fn = build(with_groups, with_cut)
        return lambda *args: (seen.append(args[0].shape[0]), fn(*args))[1]

    est._function = spy
    return seen


def _three_ways(x, t, y, var=0.1, chunk_size=1024):
    """Collapsed (default), forced N x N and forced collapsed results, with the rows each kernel saw."""
    default, full, collapsed = (KDEEstimator(noise_variance=var, chunk_size=chunk_size) for _ in range(3))
    full._collapse_below, collapsed._collapse_below = 0.0, 1.0
    seen = [_units_seen(e) for e in (default, full, collapsed)]
    return [e.estimate(x, t, y) for e in (default, full, collapsed)], seen


@pytest.mark.parametrize("n,width,n_classes,var,chunk_size", [
    (64, 1, 2, 0.1, 1024), (200, 3, 3, 0.1, 5), (500, 5, 4, 1e-3, 64), (400, 8, 10, 0.1, 100)])
def test_collapsed_bnn_codes_equal_full_path_and_dense_reference(rng, n, width, n_classes, var, chunk_size):
    """Random ±1 codes (a function of x), duplicate inputs, several classes: the O(M^2) sums over
    distinct rows give what the O(N^2) path and the dense float64 reference give."""
    x = bit_patterns(n // 2, 9, dtype=np.float64)[rng.integers(0, n // 2, n)]
    codes = np.where(rng.random((2 ** min(width, 6), width)) < 0.5, -1.0, 1.0)
    t = codes[(x @ (2 ** np.arange(9))).astype(int) % codes.shape[0]].astype(np.float32)
    y = rng.integers(0, n_classes, n)
    (res, full, collapsed), (s_res, s_full, s_coll) = _three_ways(x, t, y, var, chunk_size)
    m = len(np.unique(t, axis=0))
    assert m <= n / 2
    assert s_res == [m] and s_coll == [m] and s_full == [n]       # which path each one took
    ref = reference_nats(x, t, y, var)
    for r in (res, full, collapsed):
        _assert_matches(r, ref)
        assert r.extras["t_function_of_x"] is True
    for key in ("ixt_lower", "ity_lower", "h_upper", "h_lower"):
        assert res.extras[key] == pytest.approx(full.extras[key], abs=1e-5)


def test_collapsed_pairs_when_t_varies_within_an_input(rng):
    """A stochastic ±1 layer: t is not a function of x, so H(T+e|X) > h(e); the units are the
    distinct (row of t, input) pairs and the sums within an input group stay exact."""
    n = 300
    x = bit_patterns(4, 2, dtype=np.float64)[rng.integers(0, 4, n)]
    t = np.where(rng.random((n, 2)) < 0.3 + 0.4 * x[:, :1], 1.0, -1.0)
    y = rng.integers(0, 3, n)
    (res, full, collapsed), (s_res, s_full, _) = _three_ways(x, t, y, chunk_size=7)
    pairs = len(np.unique(np.hstack([x, t]), axis=0))
    assert s_res == [pairs] and s_full == [n]
    assert res.extras["t_function_of_x"] is False
    ref = reference_nats(x, t, y, 0.1)
    for r in (res, full, collapsed):
        _assert_matches(r, ref)
    assert res.ixt > 0.01                      # the conditional term matters here


def test_forced_collapse_on_distinct_continuous_rows_matches_reference(rng):
    """Weights all 1: the weighted kernel is the plain one."""
    x = rng.normal(size=(80, 3))
    t = np.tanh(x @ rng.normal(size=(3, 4)))
    y = rng.integers(0, 3, 80)
    (res, full, collapsed), (s_res, _, s_coll) = _three_ways(x, t, y, chunk_size=9)
    assert s_res == [80] and s_coll == [80]
    ref = reference_nats(x, t, y, 0.1)
    for r in (res, full, collapsed):
        _assert_matches(r, ref)


def test_saturated_tanh_and_int8_codes_collapse_to_the_same_numbers(rng):
    """Saturated tanh rows repeat exactly; int8 ±1 codes give what float32 ±1 codes give."""
    x = bit_patterns(1024, 10, dtype=np.float64)
    y = rng.integers(0, 2, 1024)
    t = np.tanh(40.0 * (2 * x - 1) @ rng.normal(size=(10, 4))).astype(np.float32)
    assert len(np.unique(t, axis=0)) <= 512
    (res, full, _), _ = _three_ways(x, t, y)
    assert (res.ixt, res.ity) == pytest.approx((full.ixt, full.ity), abs=TOL_BITS)
    signs = np.where(t >= 0, 1, -1)
    r8 = KDEEstimator().estimate(x, signs.astype(np.int8), y)
    r32 = KDEEstimator().estimate(x, signs.astype(np.float32), y)
    assert (r8.ixt, r8.ity, r8.extras["h_lower"]) == pytest.approx((r32.ixt, r32.ity, r32.extras["h_lower"]), abs=1e-6)
    _assert_matches(r32, reference_nats(x, signs, y, 0.1))


@pytest.mark.parametrize("width", [6, 100])          # hashed rows; rows of > 64 words (byte sort)
def test_distinct_rows_groups_like_numpy_unique(rng, width):
    t = np.where(rng.random((500, width)) < 0.5, -1.0, 1.0).astype(np.float32)
    t[250:] = t[rng.integers(0, 250, 250)]           # repeats also at the wide width
    t[::7, 0] = -0.0 * t[::7, 0]                   # -0.0 and 0.0 are the same value
    t[::11, 0] = 0.0
    first, inverse, counts = distinct_rows(t)
    _, ref_inv, ref_counts = np.unique(t + 0.0, axis=0, return_inverse=True, return_counts=True)
    assert np.array_equal(t[first[inverse]], t)
    # the same partition: unit -> numpy's group is a bijection, with the same sizes
    pairs = np.unique(np.stack([inverse, ref_inv.ravel()], axis=1), axis=0)
    assert len(pairs) == len(counts) == len(ref_counts)
    assert sorted(counts) == sorted(ref_counts)
    assert np.array_equal(np.bincount(inverse), counts)


def test_distinct_rows_survives_hash_collisions(monkeypatch, rng):
    """A hash that collides for every row: the exact check catches it and the exact fallback
    groups the rows correctly."""
    monkeypatch.setattr(counting_rows, "_hash_words", lambda words: np.zeros(words.shape[0], np.uint64))
    t = np.array([[1, 2, 3], [3, 2, 1], [1, 2, 3], [2, 1, 3]], dtype=np.int32)[rng.integers(0, 4, 50)]
    first, inverse, counts = distinct_rows(t)
    assert np.array_equal(t[first[inverse]], t)
    assert len(counts) == len(np.unique(t, axis=0))


# ----------------------------------------------------------------------------- bounds and invariances
def test_bounds_bracket_the_true_mixture_entropy():
    """T = ±a on 4096 distinct inputs: H(T+e) by numerical integration lies between the bounds."""
    a, var = 0.3, 0.1
    x = bit_patterns(4096, 12, dtype=np.float64)
    t = (a * (2 * x[:, :1] - 1))
    sd = math.sqrt(var)

    def p(u):
        return 0.5 * (np.exp(-(u - a) ** 2 / (2 * var)) + np.exp(-(u + a) ** 2 / (2 * var))) / math.sqrt(2 * math.pi * var)

    h_true = -integrate.quad(lambda u: p(u) * math.log(p(u)), -a - 12 * sd, a + 12 * sd, limit=200)[0] / LN2
    ixt_true = h_true - 0.5 * math.log2(2 * math.pi * math.e * var)
    r = KDEEstimator(noise_variance=var).estimate(x, t, x[:, 0].astype(int))
    assert r.extras["h_lower"] <= h_true <= r.extras["h_upper"]
    assert r.extras["ixt_lower"] <= ixt_true <= r.ixt
    # here T is a function of Y, so I(T;Y) is the same quantity
    assert r.extras["ity_lower"] <= ixt_true <= r.ity


def test_lower_not_above_upper_and_within_ceiling_on_random_nets(rng):
    x = bit_patterns(1024, 10, dtype=np.float64)
    y = rng.integers(0, 2, 1024)
    est = KDEEstimator()
    for width in (10, 5, 3):
        t = np.tanh(3 * x @ rng.normal(size=(10, width)))
        r = est.estimate(x, t, y)
        assert 0.0 <= r.extras["ixt_lower"] <= r.ixt <= math.log2(1024) + 1e-6
        assert r.extras["h_lower"] <= r.extras["h_upper"]


def test_permutation_of_samples_changes_nothing(rng):
    x = bit_patterns(512, 9, dtype=np.float64)
    t = np.tanh(x @ rng.normal(size=(9, 6)))
    y = rng.integers(0, 3, 512)
    est = KDEEstimator(chunk_size=100)
    r1 = est.estimate(x, t, y)
    perm = rng.permutation(512)
    r2 = KDEEstimator(chunk_size=100).estimate(x[perm], t[perm], y[perm])
    for key in ("ixt_lower", "ity_lower", "h_upper", "h_lower"):
        assert r2.extras[key] == pytest.approx(r1.extras[key], abs=1e-5)
    assert (r2.ixt, r2.ity) == pytest.approx((r1.ixt, r1.ity), abs=1e-5)


def test_block_rows_follow_width_and_chunk_size():
    est = KDEEstimator()
    assert est._block_rows(4096, 10) == 416 and est._block_rows(10_000, 10) == 170
    assert est._block_rows(10_000, 1024) == 1024 == est._block_rows(4096, 256)   # chunk_size caps
    assert est._block_rows(100_000, 3) == 64 and est._block_rows(50, 3) == 50
    assert KDEEstimator(chunk_size=7)._block_rows(4096, 10) == 7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_block_size_changes_nothing(rng, monkeypatch, dtype):
    """N = 1100 rows in blocks of 387 rows (the last one partial), of 7 rows, or in one block:
    the same numbers, equal to the dense reference."""
    n = 1100
    x = rng.normal(size=(n, 5))
    t = np.tanh(x @ rng.normal(size=(5, 10)))
    t[1000:] = t[:100]                             # some repeated rows (the cut variant), not gathered
    y = rng.integers(0, 3, n)
    results = []
    for entries, chunk_size, rows in ((1 << 18, 2048, 387), (1, 7, 7), (1 << 30, 2048, n)):
        monkeypatch.setattr(kde_module, "_BLOCK_ENTRIES", entries)
        est = KDEEstimator(dtype=dtype, chunk_size=chunk_size)
        assert est._block_rows(n, 10) == rows
        results.append(est.estimate(x, t, y))
    ref = reference_nats(x, t, y, 0.1)
    for r in results:
        _assert_matches(r, ref)
        for key in ("ixt_lower", "ity_lower", "h_upper", "h_lower"):
            assert r.extras[key] == pytest.approx(results[0].extras[key], abs=1e-6)
        assert (r.ixt, r.ity) == pytest.approx((results[0].ixt, results[0].ity), abs=1e-6)


def test_translation_and_float64_agree(rng):
    """Centring makes a large offset harmless in float32; float64 gives the same numbers."""
    x = rng.normal(size=(200, 3))
    t = np.tanh(x @ rng.normal(size=(3, 4)))
    y = rng.integers(0, 2, 200)
    r32 = KDEEstimator().estimate(x, t + 1000.0, y)
    r64 = KDEEstimator(dtype="float64").estimate(x, t, y)
    assert (r32.ixt, r32.ity) == pytest.approx((r64.ixt, r64.ity), abs=TOL_BITS)


def test_one_instance_serves_many_calls_and_new_inputs(rng):
    est = KDEEstimator(chunk_size=32)
    x1, x2 = rng.normal(size=(60, 2)), bit_patterns(16, 4, dtype=np.float64)[np.repeat(np.arange(16), 4)]
    for x in (x1, x2, x1):
        t = np.tanh(x @ rng.normal(size=(x.shape[1], 3)))
        y = rng.integers(0, 2, x.shape[0])
        _assert_matches(est.estimate(x, t, y), reference_nats(x, t, y, 0.1))


# ----------------------------------------------------------------------------- API and errors
def test_registry_and_params():
    est = ibtoolkit.get_estimator("kde", noise_variance=1e-3)
    assert isinstance(est, KDEEstimator)
    assert est.params() == {"noise_variance": 1e-3, "chunk_size": 1024, "dtype": "float32"}


@pytest.mark.parametrize("params,match", [
    ({"noise_variance": 0.0}, "noise_variance"), ({"noise_variance": float("nan")}, "noise_variance"),
    ({"chunk_size": 0}, "chunk_size"), ({"chunk_size": 2.5}, "chunk_size"), ({"dtype": "float16"}, "dtype")])
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        KDEEstimator(**params)


@pytest.mark.parametrize("t,y,match", [
    (np.ones((9, 2)), np.zeros(10, int), "same number of samples"),
    (np.full((10, 2), np.nan), np.zeros(10, int), "NaN"),
    (np.ones((10, 2)), np.full(10, 0.5), "integer"),
    (np.ones((0, 2)), np.zeros(0, int), "empty")])
def test_bad_input_raises(t, y, match):
    with pytest.raises(ValueError, match=match):
        KDEEstimator().estimate(np.ones((10, 3)), t, y)
