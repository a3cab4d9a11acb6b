"""Divergence end to end: a layer that emits inf from epoch k on -> IBCallback -> store -> plane -> CSV -> CLI.

Ground truth: the network is deterministic until the gate opens, so every recorded epoch before the
divergence must give the same plane values as estimating the stored activations directly; the
diverged epoch must appear as ``invalid`` rows (one per estimator x layer) whose ``error`` names
the epoch and the cause, and nothing after it is recorded.
"""
import json
import warnings

import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
import tensorflow as tf
from ibtoolkit import IBCallback, get_estimator, information_plane, open_store
from ibtoolkit.callback import DivergenceWarning
from ibtoolkit.plane import read_plane, write_plane

POISON_EPOCH = 2          # Keras epoch index whose forward pass emits inf (absolute epoch 3 in the store)
EVENT_EPOCH = POISON_EPOCH + 1
HIDDEN = ["hidden_1", "hidden_2"]


class Gate(tf.keras.layers.Layer):
    """Multiplies its input by a non-trainable scale: 1 until a callback sets it to inf."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones", trainable=False)

    def call(self, inputs):
        return inputs * self.scale


class OpenGate(tf.keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.get_layer("gate").scale.assign(np.inf)


def _data(n=96, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(n, 6)).astype(np.float32)
    return x, (x[:, :3].sum(axis=1) > 0).astype(np.int64)


def _model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([
        tf.keras.Input((6,)),
        tf.keras.layers.Dense(5, activation="tanh", name="hidden_1"),
        Gate(name="gate"),
        tf.keras.layers.Dense(4, activation="tanh", name="hidden_2"),
        tf.keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train_diverging(directory, epochs=6, seed=0):
    x, y = _data()
    model = _model(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0,
                  callbacks=[OpenGate(POISON_EPOCH), IBCallback(x, y, directory, schedule="all", layers=HIDDEN)])
    return caught


def test_diverged_epoch_is_invalid_in_the_csv_and_earlier_epochs_are_kept(tmp_path):
    caught = train_diverging(tmp_path / "run")
    assert sum(issubclass(w.category, DivergenceWarning) for w in caught) == 1    # warned once

    store = open_store(tmp_path / "run")
    assert store.status == "diverged"
    np.testing.assert_array_equal(store.epochs, np.arange(EVENT_EPOCH))         # 0 .. 2 kept
    events = [e for e in store.events if e["kind"] == "diverged"]
    assert len(events) == 1 and events[0]["epoch"] == EVENT_EPOCH and "loss" in events[0]["message"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "diverged"

    df = information_plane(store, ["binning", "kde"], progress=False)
    write_plane(df, tmp_path / "plane.csv")
    df = read_plane(tmp_path / "plane.csv")
    assert len(df) == 2 * len(HIDDEN) * (EVENT_EPOCH + 1)
    invalid = df[df["status"] == "invalid"]
    assert set(invalid["epoch"]) == {EVENT_EPOCH} and len(invalid) == 2 * len(HIDDEN)
    assert invalid["ixt"].isna().all() and invalid["ity"].isna().all()
    assert invalid["error"].str.contains(f"diverged at epoch {EVENT_EPOCH}: non-finite loss").all()
    ok = df[df["status"] == "ok"]
    assert set(ok["epoch"]) == set(range(EVENT_EPOCH)) and (ok["error"] == "").all()
    binning = get_estimator("binning")
    for row in ok[ok["estimator"] == "binning"].itertuples():
        direct = binning.estimate(store.inputs, store.read_epoch(row.layer, row.epoch), store.labels)
        assert (row.ixt, row.ity) == pytest.approx((direct.ixt, direct.ity), abs=1e-12)

    # asking for recorded epochs only gives no invalid rows (the diverged epoch was never recorded)
    assert (information_plane(store, "binning", epochs=[0, 1], progress=False)["status"] == "ok").all()


def test_cli_marks_the_diverged_run_and_exits_1_with_a_summary(tmp_path, monkeypatch, capsys):
    from experiments import training
    from experiments.run import main

    def fake_train_run(cfg, out, *, resume=True, threads=None, verbose=0):
        directory = training.run_directory(out, cfg)
        train_diverging(directory, seed=int(cfg["seed"]))
        return directory

    monkeypatch.setattr(training, "train_run", fake_train_run)
    out = tmp_path / "out"
    code = main(["--preset", "tiny", "--out", str(out), "--estimator", "binning", "--no-progress", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "failure(s)" in err and "estimate(s) invalid, e.g. diverged at epoch 3: non-finite loss" in err
    df = read_plane(out / "information_plane.csv")
    assert set(df.loc[df["status"] == "invalid", "epoch"]) == {EVENT_EPOCH}
    assert (df.loc[df["epoch"] < EVENT_EPOCH, "status"] == "ok").all()
    assert (out / "report.md").is_file()
