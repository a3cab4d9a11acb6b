"""IBCallback on a stacked model: one ordinary store per member, equal to what an unstacked callback records."""
import warnings

import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode)
import tensorflow as tf
from ibtoolkit import IBCallback, models, open_store
from ibtoolkit.callback import DivergenceWarning

XLA_TOL = 5e-6  # continuous taps: XLA vs TensorFlow kernels (ibtoolkit.taps.Extractor)


def _data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(n, 12)).astype(np.float32)
    return x, (x[:, :3].sum(axis=1) > 0).astype(np.int64)


def _members(precision, n=3):
    out = []
    for s in range(n):
        m = models.mlp(precision=precision, seed=7 * s + 1, name=f"run-{precision}-s{s}")
        m.compile(tf.keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
        out.append(m)
    return out


def _alone_epoch0(model, x, y, directory):
    """What an unstacked IBCallback records for ``model``'s current weights (its epoch 0)."""
    model.compile(tf.keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[IBCallback(x, y, directory=directory)])
    store = open_store(directory)
    return {layer: store.read(layer, 0) for layer in store.layers}, store


def _assert_same(stacked_acts, alone_acts, binary):
    assert list(stacked_acts) == list(alone_acts)
    for layer, a in stacked_acts.items():
        b = alone_acts[layer]
        if binary[layer]:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, atol=XLA_TOL, rtol=0)


@pytest.mark.parametrize("precision,path", [("binary", "member-axis"), ("full", "member-axis"),
                                            ("binary", "side-by-side")])
def test_each_member_store_equals_an_unstacked_recording(tmp_path, precision, path):
    x, y = _data()
    sources = _members(precision)
    stacked = models.stack(sources, path=path)
    runs = {m.name: {"run_id": m.name, "seed": i, "model": precision} for i, m in enumerate(sources)}
    cb = IBCallback(x, y, directory=tmp_path / "stack", schedule="all", run=runs, dataset="bits")
    xs, ys = stacked.member_data(x, y, seeds=[1, 2, 3])
    history = stacked.fit(xs, ys, epochs=3, batch_size=32, verbose=0, callbacks=[cb],
                          validation_data=stacked.member_data(x, y))
    assert sorted(p.name for p in (tmp_path / "stack").iterdir()) == sorted(runs)
    for i, src in enumerate(sources):
        store = open_store(tmp_path / "stack" / src.name)
        assert store.status == "complete" and list(store.epochs) == [0, 1, 2, 3]
        assert store.run == runs[src.name] and store.manifest["model"]["name"] == src.name
        for epoch in (1, 3):  # the member's metrics under the ordinary names
            metrics = store.metrics[epoch]
            for key, stacked_key in (("loss", f"{src.name}/loss"), ("accuracy", f"{src.name}/accuracy"),
                                     ("val_loss", f"val_{src.name}/loss"), ("val_accuracy", f"val_{src.name}/accuracy")):
                assert metrics[key] == pytest.approx(history.history[stacked_key][epoch - 1], rel=1e-6)
        first = {layer: store.read(layer, 0) for layer in store.layers}
        last = {layer: store.read(layer, 3) for layer in store.layers}
        alone_first, alone = _alone_epoch0(src, x, y, tmp_path / "alone0" / src.name)  # the source's weights
        assert store.layers == alone.layers and store.binary == alone.binary and store.widths == alone.widths
        _assert_same(first, alone_first, store.binary)
        alone_last, _ = _alone_epoch0(stacked.member(i), x, y, tmp_path / "alone3" / src.name)
        _assert_same(last, alone_last, store.binary)
        assert any(not np.array_equal(first[k], last[k]) for k in first)  # training did change them


def test_a_diverging_member_stops_only_its_own_recording(tmp_path):
    x, y = _data()
    sources = _members("full")
    weights = sources[1].get_weights()
    weights[0][0, 0] = np.nan  # member 1's first kernel: its loss and activations are NaN from the start
    sources[1].set_weights(weights)
    stacked = models.stack(sources)
    cb = IBCallback(x, y, directory=tmp_path / "stack", schedule="all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stacked.fit(*stacked.member_data(x, y, seeds=[1, 2, 3]), epochs=3, batch_size=32, verbose=0, callbacks=[cb])
    assert sum(issubclass(w.category, DivergenceWarning) for w in caught) == 1
    bad = open_store(tmp_path / "stack" / sources[1].name)
    assert bad.status == "diverged" and len(bad.epochs) == 0
    assert [e["kind"] for e in bad.events] == ["diverged"]
    for good in (sources[0], sources[2]):
        store = open_store(tmp_path / "stack" / good.name)
        assert store.status == "complete" and list(store.epochs) == [0, 1, 2, 3]
        assert all(np.isfinite(store.metrics[e]["loss"]) for e in (1, 2, 3))
