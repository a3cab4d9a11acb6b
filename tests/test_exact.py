"""Tests of the ``exact`` estimator against brute-force counts and hand-computed values."""
import math

import numpy as np
import pytest

import ibtoolkit
from estimators.exact import ExactEstimator
from conftest import H, twelve_bit_inputs

N12 = 4096


def sign_net(x, widths, rng):
    """Deterministic random ±1 layers (a random binary network) on inputs mapped to ±1."""
    h, layers = x * 2 - 1, []
    for w in widths:
        h = np.where(h @ rng.standard_normal((h.shape[1], w)) >= 0, 1.0, -1.0).astype(np.float32)
        layers.append(h)
    return layers


def test_deterministic_binary_layers_on_distinct_inputs(rng):
    x = twelve_bit_inputs()
    y = rng.integers(0, 2, N12)
    est = ibtoolkit.get_estimator("exact")
    for t in sign_net(x, [10, 7, 5, 4, 3], rng):
        r = est.estimate(x, t, y)
        h_t = H(t)
        assert r.ixt == pytest.approx(h_t, abs=1e-9)                # I(X;T) = H(T)
        assert r.ity == pytest.approx(h_t + H(y) - H(t, y), abs=1e-9)
        assert r.extras["n_states"] == len({tuple(row) for row in t.tolist()})
        assert r.extras["h_t"] == pytest.approx(h_t, abs=1e-9)
        assert r.extras["h_y"] == pytest.approx(H(y), abs=1e-9)
        assert r.extras["ixt_ceiling"] == 12.0


def test_identity_layer_saturates():
    x = twelve_bit_inputs()
    y = (np.arange(N12) % 3)
    r = ibtoolkit.get_estimator("exact").estimate(x, x, y)
    assert r.ixt == 12.0 and r.extras["saturated"] is True
    assert r.ity == pytest.approx(H(y), abs=1e-9)                  # T determines Y
    r = ibtoolkit.get_estimator("exact").estimate(x, x[:, :5], y)
    assert r.ixt == pytest.approx(5.0, abs=1e-12) and r.extras["saturated"] is False


def test_duplicate_inputs_by_hand():
    # x = 0 twice with t = 0 and 1; x = 1 twice with t = 0 both times.
    x = np.array([[0], [0], [1], [1]])
    t = np.array([[0], [1], [0], [0]])
    y = np.array([0, 1, 0, 0])
    h_t = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))   # 0.8113 bits
    h_t_given_x = 0.5 * 1.0 + 0.5 * 0.0                         # 0.5 bits
    r = ExactEstimator().estimate(x, t, y)
    assert r.ixt == pytest.approx(h_t - h_t_given_x, abs=1e-12)
    assert r.ity == pytest.approx(h_t, abs=1e-12)               # here T = Y
    assert r.extras["ixt_ceiling"] == 1.0


def test_duplicate_inputs_random_against_brute_force(rng):
    x = rng.integers(0, 2, size=(3000, 6))                         # 64 distinct inputs, repeated
    t = np.concatenate([x[:, :3], rng.integers(0, 2, size=(3000, 2))], axis=1)  # not a function of x
    y = rng.integers(0, 3, 3000)
    r = ExactEstimator().estimate(x, t, y)
    h_t_given_x = H(x, t) - H(x)
    assert h_t_given_x > 1.0
    assert r.ixt == pytest.approx(H(t) - h_t_given_x, abs=1e-9)
    assert r.ity == pytest.approx(H(t) + H(y) - H(t, y), abs=1e-9)
    assert r.extras["ixt_ceiling"] == pytest.approx(math.log2(len({tuple(v) for v in x.tolist()})))


def test_bounds_on_random_networks():
    x = twelve_bit_inputs()
    for seed in range(5):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, N12)
        h_y = H(y)
        for t in sign_net(x, [12, 8, 4, 2, 1], rng):
            ixt, ity = ExactEstimator().estimate(x, t, y)
            assert 0.0 <= ixt <= 12.0
            assert 0.0 <= ity <= h_y + 1e-12  # h_y from an independent sum


def test_permutation_invariance(rng):
    x = rng.integers(0, 3, size=(1000, 4))
    t = np.sign(x @ rng.standard_normal((4, 6)) + rng.standard_normal((1000, 6)))
    y = rng.integers(0, 4, 1000)
    perm = rng.permutation(1000)
    a = ExactEstimator().estimate(x, t, y)
    b = ExactEstimator().estimate(x[perm], t[perm], y[perm])
    assert a.ixt == pytest.approx(b.ixt, abs=1e-12) and a.ity == pytest.approx(b.ity, abs=1e-12)
    assert a.extras == pytest.approx(b.extras)


def test_miller_madow_correction(rng):
    x = twelve_bit_inputs()
    t = sign_net(x, [6], rng)[0]
    y = rng.integers(0, 2, N12)
    plain = ExactEstimator().estimate(x, t, y)
    mm = ExactEstimator(miller_madow=True).estimate(x, t, y)
    m_t = len({tuple(v) for v in t.tolist()})
    m_ty = len({(tuple(v), int(c)) for v, c in zip(t.tolist(), y)})
    unit = 1.0 / (2 * N12 * math.log(2))
    # distinct inputs: H(T|X) stays 0, so only H(T) is corrected
    assert mm.ixt == pytest.approx(plain.ixt + (m_t - 1) * unit, abs=1e-12)
    assert mm.ity == pytest.approx(plain.ity + ((m_t - 1) + (2 - 1) - (m_ty - 1)) * unit, abs=1e-12)
    assert ExactEstimator(miller_madow=True).params() == {"miller_madow": True, "max_levels": 256}


def test_representations_in_any_binary_encoding_agree(rng):
    x = twelve_bit_inputs()
    y = rng.integers(0, 2, N12)
    t = sign_net(x, [7], rng)[0]
    ref = ExactEstimator().estimate(x, t, y)
    for other in (t.astype(np.int8), t.astype(np.float64), t > 0, (t > 0).astype(np.uint8), 3 * t + 2):
        r = ExactEstimator().estimate(x, other, y)
        assert (r.ixt, r.ity) == pytest.approx((ref.ixt, ref.ity), abs=1e-12)


def test_wide_codes_use_the_hash_path(rng):
    """d = 200 +-1 codes, N = 10 000, against brute force."""
    n = 10_000
    x = rng.integers(0, 2, size=(n, 20))
    proto = np.where(rng.random((2500, 200)) < 0.5, -1.0, 1.0)
    t = proto[rng.integers(0, 2500, n)]
    y = rng.integers(0, 10, n)
    r = ExactEstimator().estimate(x, t, y)
    assert r.ixt == pytest.approx(H(t) - (H(x, t) - H(x)), abs=1e-9)
    assert r.ity == pytest.approx(H(t) + H(y) - H(t, y), abs=1e-9)


def test_one_instance_follows_changing_inputs(rng):
    """The x cache must not serve stale keys when x changes between calls."""
    est = ExactEstimator()
    x1 = rng.integers(0, 2, size=(500, 10))
    x2 = x1.copy()
    x2[:250] = x2[250:]                                          # duplicates now
    t = rng.integers(0, 2, size=(500, 3))
    y = rng.integers(0, 2, 500)
    est.estimate(x1, t, y)
    r = est.estimate(x2, t, y)
    assert r.ixt == pytest.approx(H(t) - (H(x2, t) - H(x2)), abs=1e-9)
    x2[0, 0] = 1 - x2[0, 0]                                        # in-place edit, then a copy
    r = est.estimate(x2.copy(), t, y)
    assert r.ixt == pytest.approx(H(t) - (H(x2, t) - H(x2)), abs=1e-9)


def test_continuous_t_refused_with_a_hint(rng):
    x = twelve_bit_inputs()
    t = np.tanh((x * 2 - 1) @ rng.standard_normal((12, 4)))
    with pytest.raises(ValueError, match=r"t looks continuous: column 0 .*binning"):
        ExactEstimator().estimate(x, t, np.zeros(N12, int))


def test_max_levels_guard(rng):
    t = rng.integers(0, 300, size=(2000, 2))
    y = rng.integers(0, 2, 2000)
    x = np.arange(2000)[:, None]
    with pytest.raises(ValueError, match="max_levels=256"):
        ExactEstimator().estimate(x, t, y)
    r = ExactEstimator(max_levels=300).estimate(x, t, y)
    assert r.ixt == pytest.approx(H(t), abs=1e-9)
    with pytest.raises(ValueError, match="max_levels"):
        ExactEstimator(max_levels=1)


def test_mutual_information_of_two_arrays(rng):
    est = ibtoolkit.get_estimator("exact")
    i = np.arange(4000)
    a, b = (i % 4)[:, None], (i // 1000)[:, None]                  # independent by construction
    assert est.mutual_information(a, b) == 0.0
    assert est.mutual_information(a, a) == pytest.approx(2.0, abs=1e-12)
    c = rng.integers(0, 3, size=(800, 2))
    d = (c[:, :1] + rng.integers(0, 2, size=(800, 1))) % 3
    assert est.mutual_information(c, d) == pytest.approx(H(c) + H(d) - H(c, d), abs=1e-9)


@pytest.mark.parametrize("x, t, y, match", [
    (np.zeros((5, 2)), np.zeros((4, 2)), np.zeros(5, int), "same number of samples"),
    (np.zeros((5, 2)), np.full((5, 2), np.nan), np.zeros(5, int), "NaN"),
    (np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, int), "empty"),
    (np.zeros((5, 2)), np.zeros((5, 2)), np.array([0, 1, 0.5, 1, 0]), "integer"),
    (np.zeros((5, 2)), np.zeros((5, 2)), np.zeros(4, int), "4 labels"),
])
def test_bad_input_raises_value_error(x, t, y, match):
    with pytest.raises(ValueError, match=match):
        ExactEstimator().estimate(x, t, y)


# ----------------------------------------------------------------------------- declared discreteness
def _declared_store(tmp_path, rng):
    """A store whose manifest declares layer 'codes' discrete (a 2-bit DoReFa consumer, values k/3)
    and 'bn' continuous, though 'bn' takes only 7 distinct values: level counting would accept it."""
    from ibtoolkit.store import ActivationStore

    x = rng.choice([-1.0, 1.0], size=(200, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    codes = rng.integers(0, 4, size=(200, 3)).astype(np.float32) / 3
    bn = rng.integers(-3, 4, size=(200, 3)).astype(np.float32) * 0.25
    taps = [{"name": "codes", "width": 3, "binary": False, "discrete": True, "levels": 4},
            {"name": "bn", "width": 3, "binary": False, "discrete": False, "levels": None}]
    with ActivationStore.create(tmp_path / "s", inputs=x, labels=y, layers=[("codes", 3), ("bn", 3)],
                                binary=[False, False], model={"name": "m", "taps": taps}) as store:
        store.append(0, {"codes": codes, "bn": bn})
    return x, y, codes, bn


def test_exact_measures_declared_discrete_layers_and_refuses_declared_continuous_ones(tmp_path, rng):
    x, y, codes, bn = _declared_store(tmp_path, rng)
    plane = ibtoolkit.information_plane(tmp_path / "s", ["exact", "binning"], progress=False)
    exact = plane[plane["estimator"] == "exact"].set_index("layer")
    assert exact.loc["codes", "status"] == "ok" and exact.loc["codes", "levels"] == 4
    assert exact.loc["codes", "ixt"] == pytest.approx(H(codes) + H(x) - H(x, codes))  # duplicate inputs
    assert exact.loc["codes", "ity"] == pytest.approx(H(codes) + H(y) - H(codes, y))
    assert exact.loc["bn", "status"] == "failed"
    assert "layer 'bn' is continuous" in exact.loc["bn", "error"] and "'binning' or 'kde'" in exact.loc["bn", "error"]
    # the same numbers given directly (no declaration) pass the level count: only the declaration refuses
    assert ExactEstimator().estimate(x, bn, y).extras["levels"] == 7
    assert (plane[plane["estimator"] == "binning"]["status"] == "ok").all()


def test_exact_reports_the_levels_it_saw():
    rng = np.random.default_rng(0)
    t = rng.choice([-1.0, 1.0], size=(100, 40)).astype(np.float32)
    x = np.arange(100, dtype=np.float32)[:, None]
    y = rng.integers(0, 2, 100)
    assert ExactEstimator().estimate(x, t, y).extras["levels"] == 2
    assert ExactEstimator().estimate(x, np.ones((100, 3), np.float32), y).extras["levels"] == 1
    with pytest.raises(ValueError, match="'binning' or 'kde'"):
        ExactEstimator(max_levels=4).estimate(x, rng.normal(size=(100, 2)), y)
