"""The tap rule on users' own models: the stored codes are what the next weight-bearing layer reads.

Each test builds a model, takes its taps and checks them against an independent computation: the
consumer layer's own output recomputed from the tap (the codes times its binarised kernel) and a
numpy sign of the tensor it is fed.
"""
import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode first)
import larq as lq
import tensorflow as tf

from ibtoolkit.taps import make_extractor, quantizer_levels, representation_taps

L = tf.keras.layers


def _sign(a):  # sign with sign(0) = +1, independent of larq
    return np.where(a >= 0, 1.0, -1.0).astype(np.float32)


def _images(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 1)).astype(np.float32)


def _outputs(model, names, x):
    """Symbolic outputs of the named layers on x, in inference mode."""
    sub = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = sub(x, training=False)
    return [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]


def _larq_convnet(pool="max"):
    kw = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    inp = tf.keras.Input((8, 8, 1))
    h = lq.layers.QuantConv2D(16, 3, padding="same", name="conv", **kw)(inp)
    if pool == "max":
        h = L.MaxPooling2D(2, name="pool")(h)
        h = L.BatchNormalization(name="bn", momentum=0.0)(h)
        h = L.Flatten(name="flat")(h)
    else:
        h = L.BatchNormalization(name="bn", momentum=0.0)(h)
        h = L.GlobalAveragePooling2D(name="gap")(h)
    h = lq.layers.QuantDense(32, input_quantizer="ste_sign", name="dense", **kw)(h)
    h = L.BatchNormalization(name="bn2", momentum=0.0)(h)
    out = lq.layers.QuantDense(10, input_quantizer="ste_sign", activation="softmax", name="out", **kw)(h)
    model = tf.keras.Model(inp, out)
    # BN moving statistics away from their (0, 1) start, so inference mode is visibly not the identity
    model.compile("adam", "sparse_categorical_crossentropy")
    x = _images(128, seed=1)
    model.fit(x, np.arange(128) % 10, epochs=1, batch_size=32, verbose=0)
    return model


@pytest.mark.parametrize("pool", ["max", "gap"])
def test_larq_conv_tap_is_what_the_quantdense_reads(pool):
    model = _larq_convnet(pool)
    taps = {t.name: t for t in representation_taps(model)}
    assert list(taps) == ["conv", "dense"]
    conv = taps["conv"]
    expected_source = "flat" if pool == "max" else "gap"
    assert (conv.source, conv.width, conv.binary, conv.levels, conv.rule) == \
        (expected_source, 256 if pool == "max" else 16, True, 2, "consumer")
    assert conv.tensor_description == f"ste_sign({expected_source}) as read by dense"
    x = _images(64, seed=2)
    got = make_extractor(model, list(taps.values()))(x)
    fed, dense_out = _outputs(model, [expected_source, "dense"], x)
    np.testing.assert_array_equal(got["conv"], _sign(fed))
    # the consumer's own output is recomputed exactly from the tap: codes @ sign(kernel)
    kernel = model.get_layer("dense").get_weights()[0]
    np.testing.assert_allclose(got["conv"] @ _sign(kernel), dense_out, atol=1e-4)
    # the second hidden layer passes its own BatchNorm (inference statistics) into out's quantizer
    (bn2,) = _outputs(model, ["bn2"], x)
    np.testing.assert_array_equal(got["dense"], _sign(bn2))


def test_residual_block_taps_the_branch_point():
    inp = tf.keras.Input((12,))
    a = L.Dense(8, activation="relu", name="a")(inp)
    b = L.Dense(8, activation="relu", name="b")(a)
    s = L.Add(name="add")([a, b])
    c = L.Dense(4, activation="tanh", name="c")(s)
    out = L.Dense(2, activation="softmax", name="out")(c)
    model = tf.keras.Model(inp, out)
    taps = {t.name: t for t in representation_taps(model)}
    assert list(taps) == ["a", "b", "c"]
    # a feeds b and the add: a branch, the tap is a's output (no consumer quantizer to apply)
    assert (taps["a"].rule, taps["a"].source, taps["a"].binary, taps["a"].levels) == ("branch", "a", False, None)
    assert taps["a"].tensor_description == "a as read by b, add"
    # b's only consumer merges it with a: the tap is b's own output, not the sum
    assert (taps["b"].rule, taps["b"].source) == ("merge", "b")
    x = np.random.default_rng(3).normal(size=(50, 12)).astype(np.float32)
    got = make_extractor(model, list(taps.values()))(x)
    a_out, b_out, c_out = _outputs(model, ["a", "b", "c"], x)
    np.testing.assert_allclose(got["a"], a_out, atol=1e-5)
    np.testing.assert_allclose(got["b"], b_out, atol=1e-5)
    np.testing.assert_allclose(got["c"], c_out, atol=1e-5)


def test_branch_into_larq_layers_with_one_quantizer_takes_their_codes():
    kw = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    inp = tf.keras.Input((6,))
    h = lq.layers.QuantDense(8, name="h", **kw)(inp)
    p = lq.layers.QuantDense(4, input_quantizer="ste_sign", name="p", **kw)(h)
    q = lq.layers.QuantDense(4, input_quantizer="ste_sign", name="q", **kw)(h)
    out = L.Dense(2, activation="softmax", name="out")(L.Concatenate(name="cat")([p, q]))
    model = tf.keras.Model(inp, out)
    tap = representation_taps(model, ["h"])[0]
    assert (tap.rule, tap.binary, tap.levels) == ("branch", True, 2)
    x = np.random.default_rng(4).choice([-1.0, 1.0], size=(40, 6)).astype(np.float32)
    (h_out,) = _outputs(model, ["h"], x)
    np.testing.assert_array_equal(make_extractor(model, [tap])(x)["h"], _sign(h_out))


def test_declared_levels_come_from_the_quantizer_not_the_data():
    q = lq.quantizers
    assert quantizer_levels("ste_sign") == 2 and quantizer_levels(q.SwishSign()) == 2
    assert quantizer_levels(q.SteTern()) == 3
    assert quantizer_levels(q.DoReFa(k_bit=3)) == 8
    assert quantizer_levels("ste_heaviside") == 2
    assert quantizer_levels(None) is None and quantizer_levels(q.NoOp(precision=1)) is None
    inp = tf.keras.Input((6,))
    h = L.Dense(5, name="h")(inp)
    t = lq.layers.QuantDense(3, input_quantizer=q.DoReFa(k_bit=2), name="t")(h)
    out = L.Dense(2, name="out")(t)
    model = tf.keras.Model(inp, out)
    tap = representation_taps(model, ["h"])[0]
    assert (tap.binary, tap.levels, tap.discrete) == (False, 4, True)  # discrete, but not ±1
    x = np.random.default_rng(5).normal(size=(200, 6)).astype(np.float32)
    codes = make_extractor(model, [tap])(x)["h"]
    assert set(np.unique(codes)) <= {0.0, 1 / 3, 2 / 3, 1.0} or np.allclose(
        np.unique(codes) * 3, np.round(np.unique(codes) * 3), atol=1e-6)
    assert tap.describe()["levels"] == 4


def test_stored_codes_of_a_larq_convnet_are_what_its_consumers_compute(tmp_path):
    from ibtoolkit import IBCallback, open_store

    model = _larq_convnet("max")
    x = _images(96, seed=7)
    y = np.arange(96) % 10
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "s", schedule="all")])
    store = open_store(tmp_path / "s")
    assert store.widths == {"conv": 256, "dense": 32} and store.binary == {"conv": True, "dense": True}
    codes, dense_codes = store.read_epoch("conv", 2), store.read_epoch("dense", 2)
    fed, dense_out, bn2 = _outputs(model, ["flat", "dense", "bn2"], x)
    np.testing.assert_array_equal(codes, _sign(fed))
    np.testing.assert_allclose(codes @ _sign(model.get_layer("dense").get_weights()[0]), dense_out, atol=1e-4)
    np.testing.assert_array_equal(dense_codes, _sign(bn2))
    taps = {t["name"]: t for t in store.manifest["model"]["taps"]}
    assert taps["conv"]["source"] == "flat" and taps["conv"]["levels"] == 2 and taps["conv"]["rule"] == "consumer"
