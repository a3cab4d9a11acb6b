"""Tests of the ``binning`` estimator against an independent brute-force binning and count."""
import math

import numpy as np
import pytest

import ibtoolkit
from estimators.binning import BinningEstimator
from estimators.exact import ExactEstimator
from conftest import H, twelve_bit_inputs

N12 = 4096


def digitize(t, lo, hi, n_bins):
    """Reference binning: np.digitize on explicit edges, outside values clipped to the edge bins."""
    edges = np.linspace(lo, hi, n_bins + 1)
    return np.clip(np.digitize(t, edges) - 1, 0, n_bins - 1)


def tanh_layer(x, width, rng, gain=1.0):
    return np.tanh(gain * (x * 2 - 1) @ rng.standard_normal((x.shape[1], width)) / np.sqrt(x.shape[1]))


def test_tanh_layer_against_brute_force(rng):
    x = twelve_bit_inputs()
    y = rng.integers(0, 2, N12)
    est = ibtoolkit.get_estimator("binning")
    assert est.params() == {"n_bins": 30, "value_range": [-1.0, 1.0], "bin_size": None, "miller_madow": False}
    for width in (10, 5, 3):
        t = tanh_layer(x, width, rng, gain=2.0)
        binned = digitize(t, -1, 1, 30)
        r = est.estimate(x, t, y)
        assert r.ixt == pytest.approx(H(binned), abs=1e-9)
        assert r.ity == pytest.approx(H(binned) + H(y) - H(binned, y), abs=1e-9)
        assert r.extras["n_states"] == len({tuple(v) for v in binned.tolist()})
        assert r.extras["n_bins"] == 30 and r.extras["bin_range"] == [-1.0, 1.0]


@pytest.mark.parametrize("kwargs", [{}, {"value_range": "data"}, {"bin_size": 0.07}, {"n_bins": 2},
                                    {"n_bins": 100, "value_range": (-3, 3)}])
def test_pm1_layer_equals_exact(rng, kwargs):
    x = twelve_bit_inputs()
    y = rng.integers(0, 3, N12)
    t = np.where(tanh_layer(x, 8, rng) >= 0, 1.0, -1.0).astype(np.float32)
    ref = ExactEstimator().estimate(x, t, y)
    r = BinningEstimator(**kwargs).fit(x, [t], y).estimate(x, t, y)
    assert (r.ixt, r.ity) == pytest.approx((ref.ixt, ref.ity), abs=1e-12)
    assert r.extras["n_states"] == ref.extras["n_states"]


def test_out_of_range_values_go_to_edge_bins():
    t = np.array([[-5.0], [-1.0], [-0.2], [0.3], [0.99], [7.0]])
    est = BinningEstimator(n_bins=2)
    codes, levels = est.bin(t)
    assert codes[:, 0].tolist() == [0, 0, 0, 1, 1, 1] and levels.tolist() == [2]


def test_data_range_is_the_layers_min_and_max_over_all_fitted_epochs(rng):
    x = rng.integers(0, 2, size=(2000, 11))
    y = rng.integers(0, 2, 2000)
    t1 = rng.uniform(-0.5, 0.5, size=(2000, 3))
    t2 = 3.0 * t1
    est = BinningEstimator(n_bins=10, value_range="data")
    assert est.needs_fit_data and not BinningEstimator().needs_fit_data
    with pytest.raises(ValueError, match="fitted first"):
        est.estimate(x, t1, y)
    est.fit(x, (t for t in (t1, t2)), y)                   # a stream, consumed once
    lo, hi = float(t2.min()), float(t2.max())
    assert est.bin_range == (lo, hi) and est.fitted_params() == {"bin_range": [lo, hi]}
    r1 = est.estimate(x, t1, y)
    assert r1.extras["bin_range"] == [lo, hi] and r1.extras["clipped_fraction"] == 0.0
    binned = digitize(t1, lo, hi, 10)
    assert r1.ixt == pytest.approx(H(binned) - (H(x, binned) - H(x)), abs=1e-9)
    fixed = BinningEstimator(n_bins=10, value_range=(lo, hi)).estimate(x, t1, y)
    assert (r1.ixt, r1.ity) == pytest.approx((fixed.ixt, fixed.ity), abs=1e-12)
    est.fit(x, [t1], y)                                    # a new fit (the next layer) replaces the range
    assert est.bin_range == (float(t1.min()), float(t1.max()))
    clone = BinningEstimator(n_bins=10, value_range="data").set_fitted(**est.fitted_params())
    assert clone.estimate(x, t2, y).extras == est.estimate(x, t2, y).extras
    with pytest.raises(ValueError, match="at least one recorded epoch"):
        BinningEstimator(value_range="data").fit(x, [], y)
    with pytest.raises(ValueError, match=r"epochs\[1\] has 5 rows"):
        BinningEstimator(value_range="data").fit(x, [t1, t1[:5]], y)
    with pytest.raises(ValueError, match="no fitted value"):
        BinningEstimator().set_fitted(bin_range=[0, 1], other=1)


def test_clipped_fraction_counts_values_outside_a_fixed_range():
    t = np.array([[-5.0, 0.0], [-1.0, 0.5], [0.3, 2.0], [0.99, 1.0]])
    x = np.arange(4)[:, None]
    r = BinningEstimator(n_bins=4).estimate(x, t, np.array([0, 1, 0, 1]))
    assert r.extras["clipped_fraction"] == 2 / 8            # -5 and 2 lie outside [-1, 1]
    assert BinningEstimator(bin_size=0.5).estimate(x, t, np.array([0, 1, 0, 1])).extras["clipped_fraction"] == 0.0


def test_fit_range_sets_the_edges_explicitly(rng):
    est = BinningEstimator(n_bins=4, value_range="data")
    assert est.fit_range([np.array([0.5, 2.0]), np.array([[-2.0], [1.0]])]) == (-2.0, 2.0)
    t = np.array([[-1.9], [-0.5], [0.5], [1.9]])
    assert est.bin(t)[0][:, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="value_range='data'"):
        BinningEstimator().fit_range(t)
    with pytest.raises(ValueError, match="NaN"):
        est.fit_range(np.array([0.0, np.nan]))


def test_bin_size_mode_against_brute_force(rng):
    x = twelve_bit_inputs()
    y = rng.integers(0, 2, N12)
    t = np.maximum(0, (x * 2 - 1) @ rng.standard_normal((12, 4)))  # ReLU, unbounded
    binned = np.floor(t / 0.5).astype(int)
    r = BinningEstimator(bin_size=0.5).estimate(x, t, y)
    assert r.ixt == pytest.approx(H(binned), abs=1e-9)
    assert r.ity == pytest.approx(H(binned) + H(y) - H(binned, y), abs=1e-9)
    assert r.extras["bin_size"] == 0.5 and r.extras["bin_range"] is None


def test_wide_layer_hash_path_against_brute_force(rng):
    """Codes of 30 bins over 64 units do not fit one int64: hashed keys."""
    n = 3000
    x = rng.integers(0, 2, size=(n, 16))
    proto = rng.uniform(-1, 1, size=(700, 64))
    t = proto[rng.integers(0, 700, n)]
    y = rng.integers(0, 2, n)
    binned = digitize(t, -1, 1, 30)
    r = BinningEstimator().estimate(x, t, y)
    assert r.ixt == pytest.approx(H(binned) - (H(x, binned) - H(x)), abs=1e-9)
    assert r.ity == pytest.approx(H(binned) + H(y) - H(binned, y), abs=1e-9)


def test_bounds_and_permutation_invariance():
    x = twelve_bit_inputs()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, N12)
        h_y = H(y)
        perm = rng.permutation(N12)
        for width in (12, 6, 2):
            t = tanh_layer(x, width, rng, gain=3.0)
            r = BinningEstimator().estimate(x, t, y)
            assert 0.0 <= r.ixt <= 12.0 and 0.0 <= r.ity <= h_y + 1e-12  # h_y from an independent sum
            p = BinningEstimator().estimate(x[perm], t[perm], y[perm])
            assert (p.ixt, p.ity) == pytest.approx((r.ixt, r.ity), abs=1e-12)


def test_miller_madow(rng):
    x = twelve_bit_inputs()
    y = rng.integers(0, 2, N12)
    t = tanh_layer(x, 2, rng)
    plain = BinningEstimator().estimate(x, t, y)
    mm = BinningEstimator(miller_madow=True).estimate(x, t, y)
    m_t = plain.extras["n_states"]
    assert mm.ixt == pytest.approx(plain.ixt + (m_t - 1) / (2 * N12 * math.log(2)), abs=1e-12)
    assert mm.extras["ixt_raw"] == mm.ixt


def test_miller_madow_is_clipped_to_the_ceiling_with_the_raw_value_kept():
    """All 4096 inputs distinct and every code distinct: the plug-in I(X;T) = log2 N exactly, and
    Miller–Madow adds (N − 1)/(2N ln 2) bits on top, past the ceiling."""
    x = twelve_bit_inputs()
    y = (np.arange(N12) % 2)
    mm = BinningEstimator(n_bins=2, miller_madow=True).estimate(x, x * 2 - 1, y)
    assert mm.extras["ixt_raw"] == pytest.approx(12.0 + (N12 - 1) / (2 * N12 * math.log(2)), abs=1e-9)
    assert mm.ixt == 12.0 and mm.extras["saturated"]
    assert 0.0 <= mm.ity <= 1.0


def test_mutual_information_of_two_arrays(rng):
    a = rng.uniform(-1, 1, size=(2000, 2))
    b = a[:, :1] + 0.3 * rng.standard_normal((2000, 1))
    est = BinningEstimator(n_bins=8)
    ba, bb = digitize(a, -1, 1, 8), digitize(b, -1, 1, 8)
    assert est.mutual_information(a, b) == pytest.approx(H(ba) + H(bb) - H(ba, bb), abs=1e-9)
    data = BinningEstimator(n_bins=8, value_range="data")
    ad, bd = digitize(a, a.min(), a.max(), 8), digitize(b, b.min(), b.max(), 8)
    assert data.mutual_information(a, b) == pytest.approx(H(ad) + H(bd) - H(ad, bd), abs=1e-9)
    assert data.bin_range is None                           # the run's range is untouched


@pytest.mark.parametrize("kwargs, match", [({"n_bins": 0}, "n_bins"), ({"value_range": (1, 1)}, "low < high"),
                                           ({"value_range": "auto"}, "'data'"), ({"bin_size": -0.1}, "bin_size"),
                                           ({"value_range": (0, np.inf)}, "finite")])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BinningEstimator(**kwargs)
    with pytest.raises(ValueError, match=match):
        ibtoolkit.get_estimator("binning", **kwargs)


@pytest.mark.parametrize("x, t, y, match", [
    (np.zeros((5, 2)), np.zeros((4, 2)), np.zeros(5, int), "same number of samples"),
    (np.zeros((5, 2)), np.full((5, 2), np.inf), np.zeros(5, int), "infinite"),
    (np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, int), "empty"),
    (np.zeros((5, 2)), np.zeros((5, 2)), np.array([0, 1, 0.5, 1, 0]), "integer"),
])
def test_bad_input_raises_value_error(x, t, y, match):
    with pytest.raises(ValueError, match=match):
        BinningEstimator().estimate(x, t, y)
