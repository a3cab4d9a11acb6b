"""k-bit quantizers mapped to an activation's range (ibtoolkit.quantizers) and the quantized MLP."""
import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode first)
import larq as lq
import tensorflow as tf

from ibtoolkit import quantizers
from ibtoolkit.models import mlp
from ibtoolkit.quantizers import kbit_quantizer
from ibtoolkit.taps import make_extractor, representation_taps


def _reference(t, k, lo, hi):
    """q(t) = lo + (hi - lo) round(n clip((t - lo)/(hi - lo), 0, 1)) / n, n = 2^k - 1 (numpy, float64)."""
    n = 2 ** k - 1
    u = np.clip((np.asarray(t, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return lo + (hi - lo) * np.round(n * u) / n


@pytest.mark.parametrize("k,lo,hi", [(2, -1.0, 1.0), (3, 0.0, 1.0), (8, -1.0, 1.0), (4, -0.5, 2.0)])
def test_kbit_quantizer_matches_the_formula_and_has_2k_levels(k, lo, hi):
    q = kbit_quantizer(k, activation=None, value_range=(lo, hi))
    # a grid that avoids the exact midpoints between levels (round-half ties differ between libraries)
    n = 2 ** k - 1
    t = np.linspace(lo - 0.5, hi + 0.5, 20 * n + 7, dtype=np.float32)
    mid = lo + (hi - lo) * (np.arange(n) + 0.5) / n
    t = t[np.min(np.abs(t[:, None] - mid[None, :]), axis=1) > 1e-4]
    got = q(tf.constant(t)).numpy()
    np.testing.assert_allclose(got, _reference(t, k, lo, hi), atol=1e-6)
    assert np.unique(got).size == 2 ** k
    np.testing.assert_allclose(np.unique(got), q.values(), atol=1e-6)
    assert q.levels == 2 ** k and q.precision == k
    assert got.min() == pytest.approx(lo) and got.max() == pytest.approx(hi)


def test_two_bit_levels_on_tanh_range():
    q = kbit_quantizer(2)  # tanh: [-1, 1]
    np.testing.assert_allclose(q.values(), [-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(q(tf.constant([-0.9, -0.2, 0.1, 0.95])).numpy(), [-1.0, -1 / 3, 1 / 3, 1.0], atol=1e-6)


def test_kbit_gradient_is_identity_on_the_range_and_zero_outside():
    q = kbit_quantizer(8)
    t = tf.constant([-1.5, -0.7, 0.0, 0.3, 0.99, 1.2])
    with tf.GradientTape() as tape:
        tape.watch(t)
        out = tf.reduce_sum(q(t))
    np.testing.assert_allclose(tape.gradient(out, t).numpy(), [0, 1, 1, 1, 1, 0], atol=1e-6)


def test_kbit_config_round_trip_and_larq_precision():
    q = kbit_quantizer(5, value_range=(-2.0, 3.0))
    q2 = type(q).from_config(q.get_config())
    assert q2.precision == 5 and q2.value_range == (-2.0, 3.0)
    t = tf.constant(np.linspace(-3, 4, 101, dtype=np.float32))
    np.testing.assert_array_equal(q(t).numpy(), q2(t).numpy())
    assert isinstance(q, lq.quantizers.DoReFa)
    assert tf.keras.utils.get_registered_object("ibtoolkit>KBitQuantizer") is type(q)


@pytest.mark.parametrize("kwargs,match", [
    (dict(k_bit=0), "k_bit"), (dict(k_bit=2.5), "k_bit"), (dict(k_bit=True), "k_bit"),
    (dict(activation="relu"), "no bounded range"),
    (dict(value_range=(1.0, 1.0)), "low < high"), (dict(value_range=(0.0, np.inf)), "finite"),
    (dict(value_range="ab"), "pair"),
])
def test_kbit_quantizer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kbit_quantizer(**kwargs)


def test_kbit_quantizer_declares_itself_a_dorefa_activation_quantizer():
    q = kbit_quantizer(8)
    assert isinstance(q, lq.quantizers.DoReFa) and q.mode == "activations" and q.precision == 8
    assert q.levels == 256 and q.values().size == 256


def test_quantized_mlp_layout():
    m = mlp(precision="quantized", bits=8, seed=0)
    layers = [m.get_layer(n) for n in ("hidden_1", "hidden_2", "hidden_3", "hidden_4", "hidden_5", "output")]
    assert all(isinstance(lyr, lq.layers.QuantDense) for lyr in layers)
    assert [lyr.units for lyr in layers] == [10, 7, 5, 4, 3, 2]
    assert layers[0].input_quantizer is None
    assert all(isinstance(lyr.input_quantizer, quantizers.KBitQuantizer) for lyr in layers[1:])
    assert all(lyr.kernel_quantizer is None for lyr in layers)
    assert len({id(lyr.input_quantizer) for lyr in layers[1:]}) == 5
    assert layers[0].activation is tf.keras.activations.tanh
    # initialisation as the full-precision twin (truncated normal, std 1/sqrt(fan_in))
    full = mlp(precision="full", seed=0)
    for name in ("hidden_1", "hidden_3", "output"):
        np.testing.assert_array_equal(m.get_layer(name).get_weights()[0], full.get_layer(name).get_weights()[0])


def test_quantized_mlp_taps_are_the_8bit_codes_of_a_numpy_forward_pass():
    m = mlp(precision="quantized", bits=8, seed=3)
    x = np.random.default_rng(0).integers(0, 2, (400, 12)).astype(np.float32)
    taps = representation_taps(m)
    assert not any(t.binary for t in taps)
    assert [t.quantizer.levels for t in taps] == [256] * 5
    got = make_extractor(m, taps)(x)
    h = x
    for i in range(1, 6):
        kernel, bias = m.get_layer(f"hidden_{i}").get_weights()
        h = _reference(np.tanh(h.astype(np.float64) @ kernel + bias), 8, -1.0, 1.0)
        np.testing.assert_allclose(got[f"hidden_{i}"], h, atol=2e-6)
        h = h.astype(np.float32)
        assert np.unique(got[f"hidden_{i}"]).size <= 256


def test_quantized_mlp_with_batch_norm_taps_after_the_activation():
    m = mlp(precision="quantized", bits=4, batch_norm=True, seed=1)
    assert [lyr.name for lyr in m.layers[1:4]] == ["hidden_1", "bn_1", "act_1"]
    taps = representation_taps(m)
    assert [t.source for t in taps] == [f"act_{i}" for i in range(1, 6)]
    x = np.random.default_rng(1).integers(0, 2, (200, 12)).astype(np.float32)
    got = make_extractor(m, taps)(x)
    levels = kbit_quantizer(4).values()
    for a in got.values():
        assert np.abs(a[..., None] - levels).min(axis=-1).max() < 1e-6


def test_quantized_mlp_rejects_unbounded_activation_without_range():
    with pytest.raises(ValueError, match="value_range"):
        mlp(precision="quantized", activation="relu")
    m = mlp(precision="quantized", activation="relu", value_range=(0.0, 4.0), bits=3)
    assert m.get_layer("hidden_2").input_quantizer.value_range == (0.0, 4.0)
