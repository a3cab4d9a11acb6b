"""``ibtoolkit.models.stack``: members start from their models' weights, train exactly as alone, bad input fails."""
import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode)
import tensorflow as tf
from ibtoolkit import models

ATOL = 1e-5


def _data(n=192, d=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(n, d)).astype(np.float32)
    y = ((x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 0)).clip(0, 1)
    return x, y


def _compile(model, lr=1e-2):
    model.compile(optimizer=tf.keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _mlps(precision, n=3, batch_norm=False):
    return [_compile(models.mlp(precision=precision, batch_norm=batch_norm, seed=10 * s, name=f"{precision}{s}"))
            for s in range(n)]


def _convnets(n=3):
    import larq as lq

    out = []
    for s in range(n):
        tf.keras.utils.set_random_seed(100 + s)
        kw = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
        m = tf.keras.Sequential([
            tf.keras.Input((6, 6, 1)),
            lq.layers.QuantConv2D(4, 3, padding="same", **kw),
            tf.keras.layers.MaxPooling2D(2),
            tf.keras.layers.BatchNormalization(momentum=0.9, scale=False),
            lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign", **kw),
            tf.keras.layers.BatchNormalization(momentum=0.9, scale=False),
            tf.keras.layers.Flatten(),
            lq.layers.QuantDense(3, input_quantizer="ste_sign", **kw),
            tf.keras.layers.Activation("softmax"),
        ], name=f"conv{s}")
        out.append(_compile(m))
    return out


def _image_data(n=128, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(n, 6, 6, 1)).astype(np.float32)
    y = (x[:, :3].sum(axis=(1, 2, 3)) > 0).astype(np.int64) + (x[:, 3:, :3].sum(axis=(1, 2, 3)) > 0)
    return x, y


def _alone(model, x, y, perm, epochs, batch_size):
    """The same model trained alone, on the rows in the member's order, unshuffled."""
    model.fit(x[perm], y[perm], epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0)
    return model.get_weights()


def _biases_before_batch_norm(model) -> set[int]:
    """Indices in ``get_weights()`` of biases that feed a BatchNormalization: their gradient is 0 in
    exact arithmetic (the batch mean removes them), so what Adam does with them is rounding noise
    normalised to steps of up to the learning rate, in any summation order.  The BN's moving mean
    averages that bias in, so it carries the same noise (scaled down)."""
    out, index, layers = set(), 0, model.layers
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if getattr(layer, "use_bias", False) and isinstance(nxt, tf.keras.layers.BatchNormalization):
            out.add(index + 1)
            out.add(index + len(layer.get_weights()) + int(nxt.scale) + int(nxt.center))  # its moving mean
        index += len(layer.get_weights())
    return out


def _flat_close(a, b, noise=(), lr=1e-2):
    assert len(a) == len(b)
    for k, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape
        np.testing.assert_allclose(u, v, atol=lr if k in noise else ATOL, rtol=0)


@pytest.mark.parametrize("kind,path", [("full", "member-axis"), ("binary", "member-axis"),
                                       ("binary-bn", "member-axis"), ("binary", "side-by-side"),
                                       ("conv", "member-axis")])
def test_members_start_from_their_weights_and_train_exactly_as_alone(kind, path):
    if kind == "conv":
        make, (x, y) = _convnets, _image_data()
    else:
        precision, bn = kind.split("-")[0], kind.endswith("-bn")
        make, (x, y) = (lambda: _mlps(precision, batch_norm=bn)), _data()
    sources = make()
    initial = [m.get_weights() for m in sources]
    stacked = models.stack(sources, path=path)
    assert stacked.path == path
    for i, weights in enumerate(initial):  # exactly the source weights, and copies (not shared)
        for u, v in zip(stacked.member_weights(i), weights):
            np.testing.assert_array_equal(u, v)
        assert all(np.array_equal(u, v) for u, v in zip(stacked.member(i).get_weights(), weights))
    seeds = [3, 4, 5]
    xs, ys = stacked.member_data(x, y, seeds=seeds)
    history = stacked.fit(xs, ys, epochs=1, batch_size=32, shuffle=False, verbose=0)
    for i, src in enumerate(make()):  # rebuilt from the same seeds: the same initial weights
        for u, v in zip(src.get_weights(), initial[i]):
            np.testing.assert_array_equal(u, v)
        perm = np.random.default_rng(seeds[i]).permutation(len(x))
        alone = src.fit(x[perm], y[perm], epochs=1, batch_size=32, shuffle=False, verbose=0)
        _flat_close(stacked.member_weights(i), src.get_weights(), _biases_before_batch_norm(src))
        np.testing.assert_allclose(history.history[f"{src.name}/loss"], alone.history["loss"], rtol=1e-5)
        np.testing.assert_allclose(history.history[f"{src.name}/accuracy"], alone.history["accuracy"], rtol=1e-6)
    np.testing.assert_allclose(history.history["loss"][0],
                               sum(history.history[f"{n}/loss"][0] for n in stacked.member_names), rtol=1e-5)


def test_member_is_an_ordinary_model_predicting_what_the_stack_predicts():
    sources = _mlps("full")
    stacked = models.stack(sources)
    x, y = _data()
    stacked.fit(*stacked.member_data(x, y, seeds=[0, 1, 2]), epochs=2, batch_size=64, verbose=0)
    out = stacked.predict(stacked.member_data(x), verbose=0)
    for i in range(3):
        member = stacked.member(i)
        assert type(member) is not type(stacked) and member.name == sources[i].name
        np.testing.assert_allclose(member.predict(x, verbose=0), out[:, i], atol=1e-6)


@pytest.mark.parametrize("conv", [dict(strides=2, padding="valid"), dict(dilation_rate=2, padding="same"),
                                  dict(padding="same", pad_values=-1.0, input_quantizer="ste_sign"),
                                  dict(strides=(1, 2), padding="same", use_bias=True, activation="tanh")])
def test_member_convolution_outputs_and_gradients_are_each_members_own(conv):
    import larq as lq

    # TensorFlow's CPU kernels have no input gradient for dilation > 1 (alone as stacked): outputs only
    gradients = conv.get("dilation_rate", 1) == 1

    def make(seed):
        tf.keras.utils.set_random_seed(seed)
        return _compile(tf.keras.Sequential([tf.keras.Input((7, 7, 2)), lq.layers.QuantConv2D(3, 3, **conv),
                                             tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)], name=f"c{seed}"))

    sources = [make(seed) for seed in (1, 2, 3)]
    stacked = models.stack(sources)
    assert stacked.path == "member-axis"
    x = np.random.default_rng(0).normal(size=(5, 7, 7, 2)).astype(np.float32)
    xs = tf.constant(stacked.member_data(x))
    with tf.GradientTape() as tape:
        out = stacked(xs)
        loss = tf.reduce_sum(out ** 2)
    kernel = next(v for v in stacked.trainable_variables if v.shape == (3, 3, 3, 2, 3))
    grad = tape.gradient(loss, kernel).numpy() if gradients else None
    for i, m in enumerate(sources):
        with tf.GradientTape() as tape:
            alone = m(x)
            loss_alone = tf.reduce_sum(alone ** 2)
        np.testing.assert_allclose(out[:, i], alone, atol=1e-5, rtol=1e-5)
        if gradients:
            np.testing.assert_allclose(grad[i], tape.gradient(loss_alone, m.layers[0].kernel), atol=1e-4, rtol=1e-5)


def test_validation_and_evaluation_per_member():
    sources = _mlps("binary", n=2)
    stacked = models.stack(sources)
    x, y = _data()
    logs = stacked.evaluate(*stacked.member_data(x, y), verbose=0, return_dict=True)
    for m in sources:
        alone = m.evaluate(x, y, verbose=0, return_dict=True)
        assert logs[f"{m.name}/loss"] == pytest.approx(alone["loss"], rel=1e-5)
        assert logs[f"{m.name}/accuracy"] == pytest.approx(alone["accuracy"], rel=1e-6)


def test_paths_are_chosen_and_reported():
    # different widths cannot share member-axis layers: side by side, saying why
    a = _compile(models.mlp(widths=(4, 3), seed=1, name="a"))
    b = _compile(models.mlp(widths=(5, 3), seed=2, name="b"))
    stacked = models.stack([a, b])
    assert stacked.path == "side-by-side" and "differ" in stacked.path_reason
    lines = []
    stacked.summary(print_fn=lines.append)
    assert "side-by-side" in lines[0]
    with pytest.raises(ValueError, match="no member-axis form"):
        models.stack([a, b], path="member-axis")
    # a layer without member-axis form (LayerNormalization) falls back too
    inp = tf.keras.Input((12,))
    out = tf.keras.layers.Dense(2, activation="softmax")(tf.keras.layers.LayerNormalization()(inp))
    ln = [_compile(tf.keras.Model(inp, out, name="ln0")), _compile(tf.keras.models.clone_model(
        tf.keras.Model(inp, out), input_tensors=None))]
    ln[1]._name = "ln1"
    assert models.stack(ln).path == "side-by-side"


def test_bad_inputs_raise_naming_the_model():
    a = _compile(models.mlp(seed=1, name="same"))
    b = _compile(models.mlp(seed=2, name="same"))
    with pytest.raises(ValueError, match="'same'.*unique"):
        models.stack([a, b])
    assert models.stack([a, b], names=["s0", "s1"]).member_names == ["s0", "s1"]
    c = _compile(models.mlp(input_dim=10, seed=3, name="narrow"))
    with pytest.raises(ValueError, match="'narrow'.*input"):
        models.stack([a, c])
    d = models.mlp(seed=4, name="uncompiled")
    with pytest.raises(ValueError, match="uncompiled"):
        models.stack([a, d])
    e = models.mlp(seed=5, name="sgd")
    e.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="'sgd' is compiled differently"):
        models.stack([a, e])
    with pytest.raises(ValueError, match="at least one"):
        models.stack([])
    with pytest.raises(ValueError, match="tf.keras models"):
        models.stack([a, "not a model"])
    stacked = models.stack([a, b], names=["s0", "s1"])
    with pytest.raises(ValueError, match="one integer per member"):
        stacked.member_data(np.zeros((4, 12)), np.zeros(4), seeds=[1])
    with pytest.raises(ValueError, match="no member named"):
        stacked.member("s9")
