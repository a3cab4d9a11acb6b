"""Model builders and representation taps, checked against independent numpy forward passes."""
import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode first)
import larq as lq
import tensorflow as tf

from ibtoolkit.models import is_sign_quantizer, mlp, resolve_quantizer, to_pm1
from ibtoolkit.taps import _flat_entry, make_extractor, representation_taps


def _pm1_inputs(n=300, d=12, seed=0):
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, d)).astype(np.float32)


def _sign(a):  # sign with sign(0) = +1, independent of larq
    return np.where(a >= 0, 1.0, -1.0).astype(np.float32)


# ----------------------------------------------------------------------------- models
def test_default_mlp_is_the_tishby_network():
    m = mlp(seed=1)
    dense = [lyr for lyr in m.layers if isinstance(lyr, tf.keras.layers.Dense)]
    assert [lyr.name for lyr in dense] == ["hidden_1", "hidden_2", "hidden_3", "hidden_4", "hidden_5", "output"]
    assert [lyr.units for lyr in dense] == [10, 7, 5, 4, 3, 2]
    assert m.input_shape == (None, 12)
    assert m.count_params() == 12 * 10 + 10 + 10 * 7 + 7 + 7 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2  # 294
    assert all(lyr.activation is tf.keras.activations.tanh for lyr in dense[:-1])
    x = _pm1_inputs(50)
    p = m(x, training=False).numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)


def test_full_precision_init_is_truncated_normal_with_std_one_over_sqrt_fan_in():
    fan_in = 400
    m = mlp(widths=(300,), input_dim=fan_in, seed=3)
    w = m.get_layer("hidden_1").kernel.numpy()
    sigma = 1.0 / np.sqrt(fan_in)
    assert np.abs(w).max() <= 2 * sigma + 1e-7  # truncated at two standard deviations
    # std of a N(0, sigma^2) truncated to [-2 sigma, 2 sigma] is 0.87962 sigma; 120 000 draws -> ~0.3 % error
    assert abs(w.std() / (0.87962 * sigma) - 1) < 0.02
    np.testing.assert_array_equal(m.get_layer("hidden_1").bias.numpy(), 0.0)


def test_seed_makes_models_reproducible():
    a, b, c = mlp(seed=7), mlp(seed=7), mlp(seed=8)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_binary_mlp_layers_and_quantizers():
    m = mlp(precision="binary", seed=0)
    names = ["hidden_1", "hidden_2", "hidden_3", "hidden_4", "hidden_5", "output"]
    layers = [m.get_layer(n) for n in names]
    assert all(isinstance(lyr, lq.layers.QuantDense) for lyr in layers)
    assert [lyr.units for lyr in layers] == [10, 7, 5, 4, 3, 2]
    assert layers[0].input_quantizer is None  # inputs are taken as given (map {0,1} with to_pm1)
    assert all(isinstance(lyr.input_quantizer, lq.quantizers.SteSign) for lyr in layers[1:])
    assert all(isinstance(lyr.kernel_quantizer, lq.quantizers.SteSign) for lyr in layers[:-1])
    assert all(isinstance(lyr.kernel_constraint, lq.constraints.WeightClip) for lyr in layers[:-1])
    assert layers[-1].kernel_quantizer is None  # last_layer="full" by default
    assert layers[-1].activation is tf.keras.activations.softmax
    # each layer has its own quantizer instance
    assert len({id(lyr.input_quantizer) for lyr in layers[1:]}) == 5


def test_binary_options():
    m = mlp(precision="binary", first_layer="full", last_layer="binary", batch_norm=True,
            input_quantizer="approx_sign", kernel_quantizer="magnitude_aware_sign")
    assert m.get_layer("hidden_1").kernel_quantizer is None
    assert m.get_layer("hidden_1").kernel_constraint is None
    assert isinstance(m.get_layer("output").kernel_quantizer, lq.quantizers.MagnitudeAwareSign)
    assert isinstance(m.get_layer("hidden_2").input_quantizer, lq.quantizers.ApproxSign)
    assert [lyr.name for lyr in m.layers if isinstance(lyr, tf.keras.layers.BatchNormalization)] == \
        ["bn_1", "bn_2", "bn_3", "bn_4", "bn_5"]
    m2 = mlp(precision="binary", input_quantizer=lq.quantizers.SwishSign(beta=5.0))
    assert isinstance(m2.get_layer("output").input_quantizer, lq.quantizers.SwishSign)


def test_full_precision_batch_norm_layout():
    m = mlp(batch_norm=True, activation="relu")
    assert [lyr.name for lyr in m.layers[1:4]] == ["hidden_1", "bn_1", "act_1"]
    assert m.get_layer("hidden_1").activation is tf.keras.activations.linear


@pytest.mark.parametrize("kwargs,match", [
    (dict(widths=()), "widths"),
    (dict(widths=(3, 0)), "widths"),
    (dict(n_classes=1), "n_classes"),
    (dict(input_dim=0), "input_dim"),
    (dict(precision="ternary"), "precision"),
    (dict(precision="binary", first_layer="half"), "first_layer"),
    (dict(precision="binary", input_quantizer="magnitude_aware_sign"), "kernel quantizer"),
    (dict(precision="binary", input_quantizer=lq.quantizers.MagnitudeAwareSign()), "kernel quantizer"),
    (dict(precision="binary", input_quantizer="no_such_quantizer"), "unknown Larq quantizer"),
    (dict(precision="binary", input_quantizer=None), "needs an input_quantizer"),
    (dict(activation="no_such_activation"), "no_such_activation"),
    (dict(seed=1.5), "seed"),
])
def test_mlp_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mlp(**kwargs)


def test_sign_quantizer_detection():
    for q in ("ste_sign", "approx_sign", "swish_sign"):
        assert is_sign_quantizer(q) and is_sign_quantizer(resolve_quantizer(q, role="input"))
    assert is_sign_quantizer(lq.quantizers.ste_sign)
    assert not is_sign_quantizer(None)
    assert not is_sign_quantizer("ste_heaviside")  # {0, 1}, not ±1
    assert not is_sign_quantizer(lq.quantizers.SteTern())
    assert not is_sign_quantizer(resolve_quantizer("magnitude_aware_sign", role="kernel"))


def test_to_pm1():
    np.testing.assert_array_equal(to_pm1([[0, 1], [1, 0]]), [[-1, 1], [1, -1]])
    np.testing.assert_array_equal(to_pm1(np.array([True, False])), [1, -1])
    assert to_pm1([0, 1]).dtype == np.float32
    with pytest.raises(ValueError, match="other value"):
        to_pm1([0, 2])
    with pytest.raises(ValueError, match="other value"):
        to_pm1([-1.0, 1.0])


# ----------------------------------------------------------------------------- taps
def test_full_precision_taps_equal_numpy_forward_pass():
    m = mlp(seed=2)
    x = _pm1_inputs(257)
    taps = representation_taps(m)
    assert [(t.name, t.width, t.binary, t.source) for t in taps] == \
        [(f"hidden_{i}", w, False, f"hidden_{i}") for i, w in enumerate((10, 7, 5, 4, 3), start=1)]
    got = make_extractor(m, taps, batch_size=64)(x)  # several batches, one partial
    h = x.astype(np.float64)
    for i in range(1, 6):
        kernel, bias = m.get_layer(f"hidden_{i}").get_weights()
        h = np.tanh(h @ kernel + bias)
        assert got[f"hidden_{i}"].dtype == np.float32
        np.testing.assert_allclose(got[f"hidden_{i}"], h, atol=1e-5)


def test_binary_taps_are_the_next_layers_quantized_input():
    m = mlp(precision="binary", seed=4)
    x = _pm1_inputs(300)
    taps = representation_taps(m)
    assert all(t.binary for t in taps)
    got = make_extractor(m, taps)(x)
    h = x
    for i in range(1, 6):
        layer = m.get_layer(f"hidden_{i}")
        kernel, bias = layer.get_weights()
        wb = kernel if i == 1 and layer.kernel_quantizer is None else _sign(kernel)
        h = _sign(h @ wb + bias)  # next layer's input quantizer: sign with sign(0) = +1
        np.testing.assert_array_equal(got[f"hidden_{i}"], h)
    assert set(np.unique(np.concatenate([a.ravel() for a in got.values()]))) == {-1.0, 1.0}


def test_batchnorm_taps_use_moving_statistics():
    m = mlp(precision="binary", batch_norm=True, seed=5)
    m.compile("adam", "sparse_categorical_crossentropy")
    x = _pm1_inputs(256, seed=1)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    m.fit(x, y, epochs=2, batch_size=64, verbose=0)
    taps = representation_taps(m)
    assert [t.source for t in taps] == [f"bn_{i}" for i in range(1, 6)]
    got = make_extractor(m, taps)(x)
    inp = tf.keras.Model(m.inputs, [m.get_layer(f"hidden_{i}").output for i in range(1, 6)])
    raw = [a.numpy() for a in inp(x, training=False)]
    for i in range(1, 6):
        bn = m.get_layer(f"bn_{i}")
        gamma, beta, mean, var = bn.get_weights()
        h = raw[i - 1]
        inference = _sign(gamma * (h - mean) / np.sqrt(var + bn.epsilon) + beta)
        np.testing.assert_array_equal(got[f"hidden_{i}"], inference)


def test_taps_by_name_on_a_foreign_sequential_model():
    s = tf.keras.Sequential([tf.keras.layers.Dense(6, input_shape=(4,), name="d1"),
                             tf.keras.layers.Activation("relu", name="a1"),
                             tf.keras.layers.Dropout(0.5, name="drop"),
                             tf.keras.layers.Dense(3, name="d2"),
                             tf.keras.layers.Dense(2, activation="softmax", name="out")])
    taps = representation_taps(s)
    assert [(t.name, t.source, t.width) for t in taps] == [("d1", "drop", 6), ("d2", "d2", 3)]
    named = representation_taps(s, layers=["out", "d1"])
    assert [t.name for t in named] == ["out", "d1"]
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    got = make_extractor(s, named)(x)  # dropout is inactive in inference mode
    w, b = s.get_layer("d1").get_weights()
    np.testing.assert_allclose(got["d1"], np.maximum(x @ w + b, 0), atol=1e-5)
    np.testing.assert_allclose(got["out"], s.predict(x, verbose=0), atol=1e-6)


def test_tap_errors():
    m = mlp()
    with pytest.raises(ValueError, match="unknown layer"):
        representation_taps(m, layers=["hidden_9"])
    with pytest.raises(ValueError, match="repeated"):
        representation_taps(m, layers=["hidden_1", "hidden_1"])
    unbuilt = tf.keras.Sequential([tf.keras.layers.Dense(3), tf.keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Input"):
        representation_taps(unbuilt)
    with pytest.raises(ValueError, match="no hidden"):
        representation_taps(tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))]))
    ex = make_extractor(m, representation_taps(m))
    with pytest.raises(ValueError, match="expects"):
        ex(np.zeros((5, 11), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        make_extractor(m, representation_taps(m), batch_size=0)


@pytest.mark.parametrize("precision", ["full", "binary"])
def test_xla_plain_and_eager_extractors_agree(precision):
    """XLA (the default when it compiles) changes only float rounding: ±1 taps are identical, tanh taps
    agree within the documented 1e-5 (XLA's tanh is a different approximation and it reorders sums;
    4.4e-6 is the largest difference measured on initial and trained 12-bit nets).  The layers run
    eagerly (``eager=True``) use TensorFlow's own kernels like the plain graph, which may only fuse
    some of them: 1e-6.  Three batches, one partial, so XLA compiles two batch shapes; the eager
    calls trace nothing."""
    m = mlp(precision=precision, seed=6)
    x = _pm1_inputs(1000)
    taps = representation_taps(m)
    xla = make_extractor(m, taps, batch_size=384, jit_compile=True)
    plain = make_extractor(m, taps, batch_size=384, jit_compile=False)
    eager = make_extractor(m, taps, batch_size=384)
    a, b, c = xla(x), plain(x), eager(x, eager=True)
    assert xla.jit_compiled is True and plain.jit_compiled is False
    assert eager._graphs == {} and eager.jit_compiled is None
    for name in a:
        assert c[name].shape == (1000, eager.widths[name]) and c[name].dtype == np.float32
        if precision == "binary":
            np.testing.assert_array_equal(a[name], b[name])
            np.testing.assert_array_equal(c[name], b[name])
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-5)
            np.testing.assert_allclose(c[name], b[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("xla", [False, True])
def test_extractor_runs_the_traced_graph_by_its_flat_entry_point(xla):
    """The extractor calls the traced graph through ``inference_fn.call_flat`` (no argument binding or
    output packing per call) and gets exactly what calling the concrete function gives, before and
    after the weights change: the captured variable handles are read once but the variables are read
    at every call."""
    m = mlp(seed=3)
    x = _pm1_inputs(500)
    ex = make_extractor(m, representation_taps(m), batch_size=512, jit_compile=xla)
    batch = ex.prepare(x)[0]

    def by_concrete_call():
        return [o.numpy() for o in ex.trace(xla)(batch)]

    for scale in (1.0, 0.5):
        m.set_weights([w * scale for w in m.get_weights()])
        got = ex([batch])
        for name, ref in zip(ex.names, by_concrete_call()):
            np.testing.assert_array_equal(got[name], ref)
        if scale == 1.0:
            before = got
    assert not np.array_equal(before["hidden_1"], got["hidden_1"])  # the new weights were seen
    assert ex.jit_compiled is xla
    assert ex._entries[xla] is not ex.trace(xla)  # the flat entry point, not the ordinary call


def test_flat_entry_falls_back_to_the_ordinary_call():
    """Without ``inference_fn.call_flat`` (another TensorFlow version) the concrete function itself is
    returned, so calls still work by the ordinary path."""
    class Plain:
        graph = None

        def __call__(self, batch):
            return [batch]

    plain = Plain()
    assert _flat_entry(plain) is plain


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_extractor_arrays_own_their_memory(jit_compile):
    """Calling the extractor returns writable arrays that own their memory, although the plain graph
    forwards buffers through identities: a tap of the input itself and two taps of one tensor (a
    Dense layer and the Dropout after it) come back as separate arrays, and writing into them changes
    neither each other nor the next call.  ``views`` gives the same values without copying, read-only,
    so nothing can write through a view into the input or another tap."""
    inp = tf.keras.Input((4,))
    ident = tf.keras.layers.Lambda(lambda t: t, name="ident")(inp)
    h = tf.keras.layers.Dense(3, activation="tanh", name="d1")(ident)
    drop = tf.keras.layers.Dropout(0.5, name="drop")(h)
    m = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="out")(drop))
    taps = representation_taps(m, layers=["ident", "d1", "drop"])
    ex = make_extractor(m, taps, jit_compile=jit_compile)
    x = np.random.default_rng(2).normal(size=(20, 4)).astype(np.float32)
    batches = ex.prepare(x)
    first = ex(batches)
    w, b = m.get_layer("d1").get_weights()
    np.testing.assert_array_equal(first["ident"], x)
    np.testing.assert_allclose(first["d1"], np.tanh(x @ w + b), atol=1e-5)
    arrays = list(first.values()) + [np.asarray(batches[0])]
    for i, a in enumerate(arrays):
        for other in arrays[i + 1:]:
            assert not np.may_share_memory(a, other)
    for a in first.values():
        a += 100.0
    again = ex(batches)
    np.testing.assert_array_equal(again["ident"], x)
    np.testing.assert_array_equal(again["d1"], again["drop"])
    np.testing.assert_allclose(again["d1"], np.tanh(x @ w + b), atol=1e-5)
    views = ex.views(batches)
    for name, view in views.items():
        np.testing.assert_array_equal(view, again[name])
        assert not view.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            view += 1.0


def test_jit_compile_falls_back_when_xla_cannot_compile():
    """A host (numpy) op cannot run under XLA: "auto" falls back to the plain graph with the right
    values, True raises naming XLA, and an unknown option is refused."""
    inp = tf.keras.Input((4,))
    h = tf.keras.layers.Dense(3, name="d1")(inp)
    host = tf.keras.layers.Lambda(
        lambda t: tf.ensure_shape(tf.numpy_function(np.tanh, [t], tf.float32), (None, 3)), name="host")(h)
    m = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="out")(host))
    taps = representation_taps(m, layers=["host"])
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    auto = make_extractor(m, taps)
    got = auto(x)
    assert auto.jit_compiled is False
    w, b = m.get_layer("d1").get_weights()
    np.testing.assert_allclose(got["host"], np.tanh(x @ w + b), atol=1e-6)
    with pytest.raises(RuntimeError, match="XLA could not compile"):
        make_extractor(m, taps, jit_compile=True)(x)
    with pytest.raises(ValueError, match="jit_compile"):
        make_extractor(m, taps, jit_compile="yes")
