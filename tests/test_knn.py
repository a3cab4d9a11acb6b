"""Tests of the ``ksg`` estimator family against closed forms and numerical integrals.

Tolerances: MI within 5 % or 0.05 bits at N = 5000, independence below
0.05 bits; entropy and the Ross estimate use the same 0.05-bit absolute tolerance.
"""
import math

import numpy as np
import pytest
from scipy import integrate

import ibtoolkit
from ibtoolkit.estimator import LN2
from estimators import knn
from estimators.knn import KSGEstimator, kl_entropy, ksg_mutual_information, ross_mutual_information
from conftest import bit_patterns

N = 5000


def _tol(truth):
    return max(0.05 * abs(truth), 0.05)


def _gaussian_pairs(rho, dim, seed, n=N):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim))
    b = rho * a + math.sqrt(1 - rho ** 2) * rng.normal(size=(n, dim))
    return a, b, -0.5 * dim * math.log2(1 - rho ** 2)


def _two_point_mi_bits(a, var):
    """I(S; aS + e) for S uniform on ±1, e ~ N(0, var): h(mixture) - h(e) by numerical integration."""
    sd = math.sqrt(var)

    def p(u):
        return 0.5 * (np.exp(-(u - a) ** 2 / (2 * var)) + np.exp(-(u + a) ** 2 / (2 * var))) / math.sqrt(2 * math.pi * var)

    h = -integrate.quad(lambda u: p(u) * math.log(p(u)), -a - 12 * sd, a + 12 * sd, limit=200)[0]
    return (h - 0.5 * math.log(2 * math.pi * math.e * var)) / LN2


# ----------------------------------------------------------------------------- KSG mutual_information
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_ksg_correlated_gaussians_1d(rho):
    a, b, truth = _gaussian_pairs(rho, 1, seed=1)
    assert ksg_mutual_information(a, b) == pytest.approx(truth, abs=_tol(truth))
    assert KSGEstimator().mutual_information(a, b) == pytest.approx(truth, abs=_tol(truth))


@pytest.mark.xfail(strict=True, reason="known KSG bias: in the 10-D joint space at N=5000 KSG "
                   "underestimates 5 pairs of rho=0.5 by about 20 % (0.80-0.85 vs 1.04 bits)")
def test_ksg_correlated_gaussians_5d_meets_issue_tolerance():
    a, b, truth = _gaussian_pairs(0.5, 5, seed=2)
    assert ksg_mutual_information(a, b) == pytest.approx(truth, abs=_tol(truth))


def test_ksg_5d_is_additive_over_independent_pairs_up_to_its_bias():
    """5 independent pairs: the 5-D estimate exceeds the estimate for one pair (it sees the other
    four) and stays below the true sum (KSG's known negative bias grows with dimension)."""
    a, b, truth = _gaussian_pairs(0.5, 5, seed=2)
    est = ksg_mutual_information(a, b)
    single = ksg_mutual_information(a[:, :1], b[:, :1])
    assert single < est < truth


@pytest.mark.parametrize("dim", [1, 5])
def test_ksg_independence(dim):
    a, b, _ = _gaussian_pairs(0.0, dim, seed=3)
    assert abs(ksg_mutual_information(a, b)) < 0.05
    assert 0.0 <= KSGEstimator().mutual_information(a, b) < 0.05


def test_copula_makes_monotone_maps_harmless():
    """MI is invariant under per-variable monotone maps; the rank transform makes KSG invariant too."""
    a, b, truth = _gaussian_pairs(0.9, 1, seed=4)
    a2, b2 = np.exp(3 * a), b ** 3          # heavy-tailed, same MI
    est = KSGEstimator(copula=True)
    assert est.mutual_information(a2, b2) == pytest.approx(truth, abs=_tol(truth))
    assert est.mutual_information(a2, b2) == pytest.approx(est.mutual_information(a, b), abs=1e-12)


# ----------------------------------------------------------------------------- Kozachenko-Leonenko and Ross
def test_kl_entropy_of_gaussian():
    rng = np.random.default_rng(5)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, 0.3], [0.0, 0.3, 0.5]])
    z = rng.multivariate_normal(np.zeros(3), cov, size=N)
    truth = 0.5 * math.log2((2 * math.pi * math.e) ** 3 * np.linalg.det(cov))
    assert kl_entropy(z) == pytest.approx(truth, abs=0.05)


def test_ross_separated_classes_give_label_entropy():
    rng = np.random.default_rng(6)
    p = np.array([0.5, 0.3, 0.2])
    y = rng.choice(3, size=N, p=p)
    z = rng.normal(size=(N, 2)) * 0.1 + 50.0 * y[:, None]
    h_y = -np.sum(np.bincount(y) / N * np.log2(np.bincount(y) / N))
    assert ross_mutual_information(z, y) == pytest.approx(h_y, abs=0.05)


def test_ross_overlapping_classes_match_numerical_integral():
    rng = np.random.default_rng(7)
    s = rng.integers(0, 2, N)
    z = 0.3 * (2 * s - 1) + math.sqrt(0.1) * rng.normal(size=N)
    assert ross_mutual_information(z, s) == pytest.approx(_two_point_mi_bits(0.3, 0.1), abs=0.05)


def test_ross_fallback_path_equals_full_neighbour_list():
    """Rows whose k-th same-class neighbour is beyond the queried list are completed by per-class
    trees; with an empty list every row takes that path, with the full list none does."""
    rng = np.random.default_rng(8)
    y = rng.choice(3, size=400, p=[0.8, 0.15, 0.05])
    z = rng.normal(size=(400, 2)) + 0.5 * y[:, None]
    dist, idx = knn._neighbours(z, 399)
    full, none_missing = knn._ross_nats(z, y, 3, dist, idx)
    empty, all_missing = knn._ross_nats(z, y, 3, dist[:, :0], idx[:, :0])
    assert none_missing == 0 and all_missing == 400
    assert empty == pytest.approx(full, abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_ross_second_list_equals_radius_count(monkeypatch, ties):
    """Rows the first list does not resolve: the second, longer neighbour list gives exactly the
    m_i of the per-class query + radius count (which it replaces), ties at d_i included; with a
    second list too short for some rows, those rows take the radius count and the value is the same."""
    rng = np.random.default_rng(10)
    y = rng.choice(3, size=600, p=[0.7, 0.2, 0.1])
    z = rng.normal(size=(600, 3)) + 0.4 * y[:, None]
    if ties:                                       # a coarse grid: many equal distances, equal rows
        z = np.round(z * 2) / 2
    dist, idx = knn._neighbours(z, 4)
    values = {}
    for factor in (0, 1, 2, knn._SECOND_FACTOR, 200):   # 0: radius count only; 200: whole list
        monkeypatch.setattr(knn, "_SECOND_FACTOR", factor)
        values[factor], missing = knn._ross_nats(z, y, 3, dist, idx)
        assert missing > 100
    assert len(set(values.values())) == 1, values


def test_ross_drops_singleton_classes():
    rng = np.random.default_rng(9)
    z = rng.normal(size=(300, 2))
    y = rng.integers(0, 2, 300)
    y_single = y.copy()
    y_single[0] = 7
    expected = ross_mutual_information(z[1:], y[1:])
    assert ross_mutual_information(z, y_single) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- the information-plane estimate
def test_estimate_on_two_bit_codes_matches_numerical_integral():
    """T = a(2·bit - 1) for the first two bits of 4096 distinct 12-bit inputs, Y = first bit.
    I(X; T+e) = 2 I_1, I(T+e; Y) = I_1 with I_1 the two-point integral."""
    a, var = 0.3, 0.1
    x = bit_patterns(4096, 12, dtype=np.float64)
    t = a * (2 * x[:, :2] - 1)
    y = x[:, 0].astype(int)
    i1 = _two_point_mi_bits(a, var)
    runs = [KSGEstimator(noise_variance=var, random_state=seed).estimate(x, t, y) for seed in range(8)]
    ixt, ity = np.array([r.ixt for r in runs]), np.array([r.ity for r in runs])
    # bias: the mean over 8 noise draws is within 0.05 bits; spread: one draw has a standard
    # deviation of about 0.03 bits here, so each single run is within 4 sd = 0.12 bits
    assert ixt.mean() == pytest.approx(2 * i1, abs=0.05)
    assert ity.mean() == pytest.approx(i1, abs=0.05)
    assert np.all(np.abs(ixt - 2 * i1) < 0.12) and np.all(np.abs(ity - i1) < 0.12)
    r = runs[0]
    assert r.extras["ixt_ceiling"] == 12.0
    assert r.extras["h_noise_exact"] == pytest.approx(math.log2(2 * math.pi * math.e * var), abs=1e-12)
    assert r.extras["h_noise"] == pytest.approx(r.extras["h_noise_exact"], abs=0.1)


def test_duplicate_inputs_and_t_function_of_x():
    x = bit_patterns(2048, 11, dtype=np.float64)
    x = np.vstack([x, x])                                   # every input twice
    t = 0.3 * (2 * x[:, :2] - 1)
    y = x[:, 0].astype(int)
    r = KSGEstimator().estimate(x, t, y)
    assert r.extras["n_distinct_x"] == 2048 and r.extras["ixt_ceiling"] == 11.0
    assert r.ixt == pytest.approx(2 * _two_point_mi_bits(0.3, 0.1), abs=0.12)   # 4 sd of one draw
    t_bad = t.copy()
    t_bad[0] = -t_bad[0]                                    # same x, different t
    with pytest.raises(ValueError, match="function of x"):
        KSGEstimator().estimate(x, t_bad, y)


def test_clamping_and_raw_values():
    x = bit_patterns(1024, 10, dtype=np.float64)
    rng = np.random.default_rng(10)
    t = np.zeros((1024, 3))                                 # constant layer: I = 0
    y = rng.integers(0, 2, 1024)
    r = KSGEstimator().estimate(x, t, y)
    assert r.ixt == max(r.extras["ixt_raw"], 0.0) and r.ity == max(r.extras["ity_raw"], 0.0)
    assert r.extras["ixt_raw"] == pytest.approx(0.0, abs=1e-12)   # T+e is the noise sample itself
    assert abs(r.extras["ity_raw"]) < 0.05


def test_permutation_of_samples_changes_nothing():
    x = bit_patterns(1024, 10, dtype=np.float64)
    rng = np.random.default_rng(11)
    t = np.tanh(x @ rng.normal(size=(10, 4)))
    y = rng.integers(0, 2, 1024)
    perm = rng.permutation(1024)
    est = KSGEstimator()
    r1 = est.estimate(x, t, y)
    # the noise is drawn per row position, so permute it together with the rows
    noise = est._noise_for(t.shape)
    est2 = KSGEstimator()
    est2._noise[t.shape] = noise[perm]
    r2 = est2.estimate(x[perm], t[perm], y[perm])
    assert (r2.ixt, r2.ity) == pytest.approx((r1.ixt, r1.ity), abs=1e-9)


# ----------------------------------------------------------------------------- API and errors
def test_registry_params_and_bits_nats():
    est = ibtoolkit.get_estimator("ksg", k=4)
    assert isinstance(est, KSGEstimator)
    assert est.params() == {"k": 4, "noise_variance": 0.1, "random_state": 0, "copula": False}
    a, b, _ = _gaussian_pairs(0.6, 1, seed=12, n=1000)
    assert ksg_mutual_information(a, b, k=4) * LN2 == pytest.approx(
        knn.digamma(4) + knn.digamma(1000) - _marginal_digamma_mean(a, b, 4), abs=1e-9)


def _marginal_digamma_mean(a, b, k):
    """Brute-force KSG counts in nats (dense distances), for the bits/nats check above."""
    rng = np.random.default_rng(0)
    a, b = knn._prepare(a, rng, False), knn._prepare(b, rng, False)
    da = np.abs(a - a.T)
    db = np.abs(b - b.T)
    dz = np.maximum(da, db)
    np.fill_diagonal(dz, np.inf)
    eps = np.sort(dz, axis=1)[:, k - 1]
    n_a = (da < eps[:, None]).sum(1)                        # self included (distance 0)
    n_b = (db < eps[:, None]).sum(1)
    return np.mean(knn.digamma(n_a) + knn.digamma(n_b))


@pytest.mark.parametrize("params,match", [
    ({"k": 0}, "k must"), ({"k": 2.0}, "k must"), ({"noise_variance": -1.0}, "noise_variance"),
    ({"random_state": "a"}, "random_state"), ({"copula": 1}, "copula")])
def test_bad_parameters_raise(params, match):
    with pytest.raises(ValueError, match=match):
        KSGEstimator(**params)


def test_bad_input_raises():
    est = KSGEstimator()
    with pytest.raises(ValueError, match="more than k=3 samples"):
        est.estimate(np.eye(3), np.eye(3), [0, 1, 0])
    with pytest.raises(ValueError, match="NaN"):
        est.mutual_information(np.full((10, 1), np.nan), np.ones((10, 1)))
    with pytest.raises(ValueError, match="same number of samples"):
        est.mutual_information(np.ones((10, 1)), np.ones((9, 1)))
    with pytest.raises(ValueError, match="integer"):
        est.estimate(np.ones((10, 2)), np.ones((10, 2)), np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="3 labels but there are 10 samples"):
        ross_mutual_information(np.ones((10, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="infinite"):
        kl_entropy(np.full((10, 2), np.inf))
    with pytest.raises(ValueError, match="distinct points"):
        kl_entropy(np.ones((10, 2)))


def test_plane_values_are_clipped_to_the_range_of_the_true_values(rng):
    """A wide, spread-out layer on 64 distinct inputs: the Kozachenko–Leonenko difference overshoots
    log2 64 = 6 bits by far; ``ixt`` is clipped to that ceiling (flagged saturated) and ``ity`` to
    H(Y), while the raw estimates stay in the extras."""
    x = np.arange(64, dtype=np.float64)[:, None]
    t = 10.0 * rng.standard_normal((64, 200))
    y = np.repeat([0, 1, 1, 2], 16)
    res = KSGEstimator().estimate(x, t, y)
    h_y = -(0.25 * np.log2(0.25) * 2 + 0.5 * np.log2(0.5))
    assert res.extras["ixt_raw"] > 6.0 + 10.0           # the overshoot this guards against
    assert res.ixt == 6.0 and res.extras["saturated"]
    assert 0.0 <= res.ity <= h_y + 1e-12
    assert res.ity == min(max(res.extras["ity_raw"], 0.0), h_y)
