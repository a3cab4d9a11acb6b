"""IBCallback end to end: recorded codes, inference-mode BatchNorm, round trip, resume, live MI,
divergence, and a SIGKILL crash test."""
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import ibtoolkit
import tensorflow as tf

from ibtoolkit import Estimator, get_estimator
from ibtoolkit.callback import DivergenceWarning, IBCallback
from ibtoolkit.models import mlp
from ibtoolkit.store import ActivationStore, StoreError, StoreWriter, open_store
from ibtoolkit.taps import make_extractor

import _callback_child as child

HIDDEN = [f"hidden_{i}" for i in range(1, 6)]


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(n, 12)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] + x[:, 2]) > 0).astype(np.int64)
    return x, y


def _compiled(**kwargs):
    model = mlp(seed=kwargs.pop("seed", 0), **kwargs)
    # eager training steps: a few steps of a tiny net cost less than tracing a train function; the
    # callback's own extractor is still the compiled tf.function under test
    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=True)
    return model


def _raw(model, names, x, training=False):
    sub = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    out = sub(x, training=training)
    return [o.numpy() for o in (out if isinstance(out, list) else [out])]


def test_bnn_records_only_pm1_codes_equal_to_the_next_input_quantizer(tmp_path):
    x, y = _data()
    model = _compiled(precision="binary")
    cb = IBCallback(x, y, tmp_path / "run", schedule="all")
    hist = model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[cb])
    store = open_store(tmp_path / "run")
    np.testing.assert_array_equal(store.epochs, [0, 1, 2, 3])
    assert store.layers == HIDDEN and all(store.binary.values())
    for layer in HIDDEN:
        codes = store.read(layer)
        assert codes.shape == (4, 256, store.widths[layer])
        assert set(np.unique(codes)) == {-1.0, 1.0}
    # independent computation at the final epoch: next layer's input_quantizer on this layer's output
    nexts = HIDDEN[1:] + ["output"]
    for layer, raw in zip(HIDDEN, _raw(model, HIDDEN, x)):
        quantized = model.get_layer(nexts[HIDDEN.index(layer)]).input_quantizer(raw).numpy()
        np.testing.assert_array_equal(store.read_epoch(layer, 3), quantized)
    assert store.metrics[3]["loss"] == pytest.approx(hist.history["loss"][-1], rel=1e-6)
    assert store.metrics[2]["accuracy"] == pytest.approx(hist.history["accuracy"][1], rel=1e-6)
    assert store.status == "complete"


def test_batchnorm_codes_are_inference_mode_not_training_mode(tmp_path):
    x, y = _data(seed=1)
    model = _compiled(precision="binary", batch_norm=True, seed=2)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "bn", schedule="all")])
    store = open_store(tmp_path / "bn")
    bns = [f"bn_{i}" for i in range(1, 6)]
    raws = _raw(model, [f"hidden_{i}" for i in range(1, 6)], x)
    n_differ = 0
    for i, (layer, raw) in enumerate(zip(HIDDEN, raws)):
        bn = model.get_layer(bns[i])
        gamma, beta, mean, var = bn.get_weights()
        inference = np.where(gamma * (raw - mean) / np.sqrt(var + bn.epsilon) + beta >= 0, 1.0, -1.0)
        batch_mean, batch_var = raw.mean(axis=0), raw.var(axis=0)
        training = np.where(gamma * (raw - batch_mean) / np.sqrt(batch_var + bn.epsilon) + beta >= 0, 1.0, -1.0)
        recorded = store.read_epoch(layer, 2)
        np.testing.assert_array_equal(recorded, inference)
        n_differ += int((recorded != training).sum())
    assert n_differ > 0  # the two modes really give different codes here, so the check above can fail


def test_round_trip_schedule_manifest_and_default_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = _data(200, seed=3)
    model = _compiled(name="tiny_dnn")
    cb = IBCallback(x, y, schedule="every:2", dataset="parity-ish")
    model.fit(x, y, epochs=5, batch_size=50, verbose=0, callbacks=[cb])
    assert cb.directory.parent == Path("ib_runs") and cb.directory.name.startswith("tiny_dnn-")
    store = open_store(cb.directory)
    np.testing.assert_array_equal(store.epochs, [0, 2, 4, 5])
    assert store.status == "complete"
    assert not any(store.binary.values())
    np.testing.assert_array_equal(store.inputs, x)
    np.testing.assert_array_equal(store.labels, y)
    h = x.astype(np.float64)
    for layer in HIDDEN:  # the last stored epoch is the trained model
        kernel, bias = model.get_layer(layer).get_weights()
        h = np.tanh(h @ kernel + bias)
        np.testing.assert_allclose(store.read_epoch(layer, 5), h, atol=1e-5)
    assert store.read("hidden_3").shape == (4, 200, 5)
    manifest = store.manifest
    assert manifest["model"]["name"] == "tiny_dnn"
    assert manifest["model"]["config"]["config"]["name"] == "tiny_dnn"
    assert "hidden_3" in manifest["model"]["summary"]
    assert manifest["dataset"]["name"] == "parity-ish"
    assert manifest["dataset"]["n_samples"] == 200
    assert manifest["dataset"]["label_counts"] == np.bincount(y).tolist()
    assert set(store.metrics[4]) == {"loss", "accuracy"}


def test_resume_second_fit_initial_epoch_and_new_callback(tmp_path):
    x, y = _data(128, seed=4)
    model = _compiled()
    cb = IBCallback(x, y, tmp_path / "r", schedule="every:2")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[cb])       # 0, 2, 3
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[cb])       # continues: 4, 5
    np.testing.assert_array_equal(open_store(tmp_path / "r").epochs, [0, 2, 3, 4, 5])
    model.fit(x, y, epochs=8, initial_epoch=5, batch_size=64, verbose=0, callbacks=[cb])  # 6, 8
    np.testing.assert_array_equal(open_store(tmp_path / "r").epochs, [0, 2, 3, 4, 5, 6, 8])
    fresh = IBCallback(x, y, tmp_path / "r", schedule="all")  # as after a restart: continues after epoch 8
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[fresh])
    store = open_store(tmp_path / "r")
    np.testing.assert_array_equal(store.epochs, [0, 2, 3, 4, 5, 6, 8, 9, 10])
    assert store.status == "complete"
    assert sum(e["kind"] == "resumed" for e in store.events) == 3
    h = x.astype(np.float64)
    for layer in HIDDEN:
        kernel, bias = model.get_layer(layer).get_weights()
        h = np.tanh(h @ kernel + bias)
    np.testing.assert_allclose(store.read_epoch("hidden_5", 10), h, atol=1e-5)


def test_early_stop_keeps_the_final_state_and_marks_interrupted(tmp_path):
    x, y = _data(128, seed=5)
    model = _compiled()

    class StopAfter2(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    model.fit(x, y, epochs=50, batch_size=64, verbose=0,
              callbacks=[IBCallback(x, y, tmp_path / "s", schedule="every:10", background=False), StopAfter2()])
    store = open_store(tmp_path / "s")
    np.testing.assert_array_equal(store.epochs, [0, 2])
    assert store.status == "interrupted"


class _Width(Estimator):
    """Toy estimator: I(X;T) := number of units, I(T;Y) := 0 (checks the log key prefixes)."""

    name = "width_toy"

    def _estimate(self, x, t, y):
        return float(t.shape[1]), 0.0


def test_live_mi_in_history_equals_offline_estimates(tmp_path):
    x, y = _data(256, seed=6)
    model = _compiled(precision="binary", seed=3)
    cb = IBCallback(x, y, tmp_path / "mi", schedule=[0, 1, 3], estimators=["exact", _Width()])
    hist = model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[cb])
    store = open_store(tmp_path / "mi")
    np.testing.assert_array_equal(store.epochs, [0, 1, 3])
    exact = get_estimator("exact")
    for layer in HIDDEN:
        offline = [exact.estimate(store.inputs, store.read_epoch(layer, e), store.labels) for e in (1, 3)]
        # rectangular history: one value per epoch (1, 2, 3), NaN at the unrecorded epoch 2
        ixt, ity = (np.asarray(hist.history[f"ib/{layer}/{a}"]) for a in ("ixt", "ity"))
        assert len(ixt) == len(ity) == len(hist.history["loss"]) == 3 and np.isnan(ixt[1]) and np.isnan(ity[1])
        np.testing.assert_allclose(ixt[[0, 2]], [r.ixt for r in offline], rtol=1e-12)
        np.testing.assert_allclose(ity[[0, 2]], [r.ity for r in offline], rtol=1e-12)
        np.testing.assert_array_equal(hist.history[f"ib/width_toy/{layer}/ixt"],
                                      [store.widths[layer], np.nan, store.widths[layer]])
        epoch0 = exact.estimate(store.inputs, store.read_epoch(layer, 0), store.labels)
        assert store.metrics[0][f"ib/{layer}/ixt"] == pytest.approx(epoch0.ixt, rel=1e-12)
        assert store.metrics[3][f"ib/{layer}/ixt"] == pytest.approx(offline[1].ixt, rel=1e-12)
    # ceilings: I(X;T) <= min(width, log2 N) and I(T;Y) <= H(Y) <= 1 bit
    assert hist.history["ib/hidden_5/ixt"][-1] <= 3 + 1e-9
    assert all(0 <= v <= 1 + 1e-9 for v in np.asarray(hist.history["ib/hidden_1/ity"])[[0, 2]])


class _KeysSeen(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(sorted(k for k in logs if k.startswith("ib/")))


def test_history_csvlogger_and_later_callbacks_stay_rectangular(tmp_path):
    import pandas as pd

    x, y = _data(128, seed=2)
    model = _compiled(seed=1)  # tanh net: continuous taps, a continuous estimator
    cb = IBCallback(x, y, tmp_path / "s", schedule=[2, 5], estimators=[{"name": "binning", "n_bins": 10}])
    csv = tmp_path / "log.csv"
    hist = model.fit(x, y, epochs=6, batch_size=64, verbose=0,
                     callbacks=[cb, tf.keras.callbacks.CSVLogger(str(csv)), later := _KeysSeen()])
    frame = pd.DataFrame(hist.history)  # raised before: 2 ib values for 6 losses
    store = open_store(tmp_path / "s")
    keys = [f"ib/{layer}/{a}" for layer in HIDDEN for a in ("ixt", "ity")]
    assert frame.shape[0] == 6 and set(keys) <= set(frame.columns)
    recorded = frame[keys].notna().all(axis=1).to_numpy()
    np.testing.assert_array_equal(recorded, [False, True, False, False, True, False])  # epochs 2 and 5
    assert frame[keys].isna().sum().sum() == 4 * len(keys)
    for epoch in (2, 5):
        assert frame.loc[epoch - 1, "ib/hidden_3/ixt"] == store.metrics[epoch]["ib/hidden_3/ixt"]
    logged = pd.read_csv(csv)
    assert len(logged) == 6
    np.testing.assert_array_equal(logged["ib/hidden_1/ixt"].to_numpy(), frame["ib/hidden_1/ixt"].to_numpy())
    # a callback placed after (as TensorBoard would be: it logs every key of logs) saw every key each epoch
    assert later.seen == [sorted(keys)] * 6


def test_live_exact_on_a_continuous_net_is_refused_once_before_training(tmp_path):
    x, y = _data(64)
    model = _compiled(seed=0)  # tanh: no layer declares discrete values
    cb = IBCallback(x, y, tmp_path / "s", estimators=["exact"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning per layer and epoch any more
        with pytest.raises(ValueError, match=r"'exact' measures discrete codes only.*'hidden_1'.*'binning' or 'kde'"):
            model.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    assert not (tmp_path / "s" / "manifest.json").exists()  # refused before the store was touched


class _Poison(tf.keras.callbacks.Callback):
    """Sets hidden_1's kernel to NaN at a chosen point, to make training diverge deterministically."""

    def __init__(self, when, epoch):
        super().__init__()
        self.when, self.epoch = when, epoch

    def _poison(self, epoch):
        if epoch == self.epoch:
            layer = self.model.get_layer("hidden_1")
            layer.kernel.assign(np.full(layer.kernel.shape, np.nan, np.float32))

    def on_epoch_begin(self, epoch, logs=None):
        if self.when == "begin":
            self._poison(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.when == "end":
            self._poison(epoch)


@pytest.mark.parametrize("when,epochs,event_epoch,what", [
    ("end", [0, 1], 2, "activations"),   # poisoned after epoch 2's loss: caught in the activations
    ("begin", [0, 1, 2], 3, "loss"),     # poisoned before epoch 3's updates: caught in its loss
])
def test_divergence_records_event_and_keeps_earlier_epochs(tmp_path, when, epochs, event_epoch, what):
    x, y = _data(128, seed=7)
    model = _compiled()
    cb = IBCallback(x, y, tmp_path / "d", schedule="all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[_Poison(when, event_epoch - 1), cb])
    assert sum(issubclass(w.category, DivergenceWarning) for w in caught) == 1
    store = open_store(tmp_path / "d")
    np.testing.assert_array_equal(store.epochs, epochs)
    assert store.status == "diverged"
    diverged = [e for e in store.events if e["kind"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["epoch"] == event_epoch and what in diverged[0]["message"]
    for layer in HIDDEN:
        assert np.isfinite(store.read(layer)).all()


def test_bad_arguments_fail_before_training(tmp_path):
    x, y = _data(32)
    with pytest.raises(ValueError, match="samples"):
        IBCallback(x, y[:10])
    with pytest.raises(ValueError, match="unknown schedule"):
        IBCallback(x, y, schedule="sometimes")
    with pytest.raises(ValueError, match="unknown estimator"):
        IBCallback(x, y, estimators=["no_such_estimator"])
    with pytest.raises(ValueError, match="dtype"):
        IBCallback(x, y, dtype="float64")
    with pytest.raises(ValueError, match="jit_compile"):
        IBCallback(x, y, jit_compile="always")
    with pytest.raises(ValueError, match="NaN"):
        IBCallback(np.full((4, 12), np.nan), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="x must be a numeric array, got dtype <U1"):
        IBCallback(np.full((4, 12), "a"), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="x must be real-valued, got dtype complex128"):
        IBCallback(x.astype(complex), y)
    onehot = np.eye(2)[y]
    np.testing.assert_array_equal(IBCallback(x, onehot).y, y)
    with pytest.raises(ValueError, match="one-hot"):
        IBCallback(x, onehot * 0.5)


def test_second_writer_on_a_running_store_fails(tmp_path):
    x, y = _data(64)
    model = _compiled()
    first = IBCallback(x, y, tmp_path / "lock")
    first.set_model(model)
    first.on_train_begin()
    try:
        second = IBCallback(x, y, tmp_path / "lock")  # same process: the message says so
        with pytest.raises(StoreError, match="this process already has the store open for writing"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[second])
    finally:
        first.close()


def test_sigkill_mid_run_leaves_a_readable_store_that_resumes(tmp_path):
    directory = tmp_path / "crash"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(ibtoolkit.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, child.__file__, str(directory), "100000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        n = 0
        while n < 8:
            assert proc.poll() is None, f"child died early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "child recorded too few epochs in 120 s"
            time.sleep(0.05)
            if (directory / "manifest.json").exists():
                n = len(open_store(directory).epochs)
        time.sleep(0.137)  # somewhere inside a later epoch's commit or training
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = open_store(directory)
    epochs = store.epochs
    assert len(epochs) >= 8
    np.testing.assert_array_equal(epochs, np.arange(len(epochs)))  # schedule "all": no gap, no torn epoch
    # the manifest still says running (the writer could not change it), but no process holds the lock:
    # the status is derived on read as interrupted
    assert store.manifest["status"] == "running" and store.status == "interrupted"
    for layer in store.layers:
        stacked = store.read(layer)
        assert stacked.shape == (len(epochs), 256, store.widths[layer])
        assert set(np.unique(stacked)) == {-1.0, 1.0}
        for k, e in enumerate(epochs):
            np.testing.assert_array_equal(store.read_epoch(layer, int(e)), stacked[k])

    x, y = child.make_data()
    last = int(epochs[-1])
    before = (directory / "manifest.json").read_bytes(), (directory / "epochs.jsonl").read_bytes()
    other = child.build_model(seed=1)  # another model on the killed run's store: refused, nothing changed
    with pytest.raises(StoreError, match=r"not those of any epoch this store recorded.*sibling store.*crash-2"):
        other.fit(x, y, epochs=2, batch_size=128, verbose=0, callbacks=[IBCallback(x, y, directory, schedule="all")])
    assert ((directory / "manifest.json").read_bytes(), (directory / "epochs.jsonl").read_bytes()) == before
    # the same seeded model is the state of epoch 0: it continues from there, trains the recorded epochs
    # again without recording them twice, says so in the store, and records from last + 1 on
    model = child.build_model()
    with pytest.warns(RuntimeWarning, match=rf"epochs 1..{last} are trained again"):
        model.fit(x, y, epochs=last + 2, batch_size=128, verbose=0,
                  callbacks=[IBCallback(x, y, directory, schedule="all")])
    resumed = open_store(directory)
    np.testing.assert_array_equal(resumed.epochs, np.append(epochs, [last + 1, last + 2]))
    assert resumed.status == "complete"
    kinds = [e["kind"] for e in resumed.events]
    assert "retrained" in kinds and "retrained_check" in kinds
    retrained = next(e for e in resumed.events if e["kind"] == "retrained")
    assert retrained["epoch"] == 0 and f"recording resumes at epoch {last + 1}" in retrained["message"]


def test_a_fresh_model_on_an_existing_store_is_refused_and_nothing_is_lost(tmp_path):
    x, y = _data(128, seed=4)
    _compiled(seed=0).fit(x, y, epochs=3, batch_size=64, verbose=0,
                          callbacks=[IBCallback(x, y, tmp_path / "r", schedule="all")])
    files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    fresh = _compiled(seed=7)  # another initialisation: it does not continue epoch 3
    with pytest.raises(StoreError) as err:
        fresh.fit(x, y, epochs=2, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "r")])
    message = str(err.value)
    assert str(tmp_path / "r") in message and str(tmp_path / "r-2") in message and "one run" in message
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == files
    assert open_store(tmp_path / "r").status == "complete"
    # the suggested sibling store takes the new run
    fresh.fit(x, y, epochs=1, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "r-2")])
    assert open_store(tmp_path / "r-2").epochs.tolist() == [0, 1]


def test_a_fit_ending_between_recorded_epochs_is_continued_at_the_right_epoch(tmp_path):
    """An explicit schedule records [0, 2]; fit ran 4 epochs: the store keeps the weights of epoch 4
    (event ``trained``), so a new callback numbers the next epochs 5, 6 (before: 3, 4, mislabelled)."""
    x, y = _data(128, seed=4)
    model = _compiled(seed=0)
    model.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "r", schedule=[0, 2])])
    store = open_store(tmp_path / "r")
    assert store.epochs.tolist() == [0, 2] and sorted(store.weight_states) == [0, 2, 4]
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "r", schedule="all")])
    store = open_store(tmp_path / "r")
    assert store.epochs.tolist() == [0, 2, 5, 6]
    from ibtoolkit.fingerprint import weight_fingerprint

    assert store.weight_states[6] == [weight_fingerprint(model)]


def test_continuing_from_an_older_committed_state_retrains_and_records_it(tmp_path):
    x, y = _data(128, seed=4)
    model = _compiled(seed=0)
    saved = {}

    class Keep(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved[epoch + 1] = self.model.get_weights()

    model.fit(x, y, epochs=5, batch_size=64, verbose=0,
              callbacks=[IBCallback(x, y, tmp_path / "r", schedule="all"), Keep()])
    model.set_weights(saved[2])  # as from a checkpoint of epoch 2, older than the last committed epoch 5
    with pytest.warns(RuntimeWarning, match=r"epochs 3..5 are trained again"):
        model.fit(x, y, epochs=5, initial_epoch=2, batch_size=64, verbose=0,
                  callbacks=[IBCallback(x, y, tmp_path / "r", schedule="all")])
    store = open_store(tmp_path / "r")
    assert store.epochs.tolist() == [0, 1, 2, 3, 4, 5]  # no gap, nothing recorded twice
    assert store.status == "complete"
    events = {e["kind"]: e for e in store.events}
    assert events["retrained"]["epoch"] == 2 and events["retrained_check"]["epoch"] == 5
    model.fit(x, y, epochs=1, batch_size=64, verbose=0,  # the retrained weights of 5 are a known state
              callbacks=[IBCallback(x, y, tmp_path / "r", schedule="all")])
    assert open_store(tmp_path / "r").epochs.tolist() == [0, 1, 2, 3, 4, 5, 6]


class _Boom(tf.keras.callbacks.Callback):
    """Raises in on_epoch_end of one epoch, as a user's callback or Ctrl-C in a notebook would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("boom")


def test_fit_that_raises_keeps_epochs_and_the_same_callback_continues(tmp_path):
    """Keras skips on_train_end when fit raises: the store stays locked by this process.  A new
    writer gets an error that says so; fit again with the same callback releases it, marks the
    run interrupted, and continues the numbering."""
    x, y = _data()
    model = _compiled(precision="binary")
    cb = IBCallback(x, y, tmp_path / "run", schedule="all", background=False)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, epochs=4, batch_size=128, verbose=0, callbacks=[cb, _Boom(1)])
    np.testing.assert_array_equal(open_store(tmp_path / "run").epochs, [0, 1, 2])
    with pytest.raises(StoreError, match="this process already has the store open for writing"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "run", schedule="all")])
    model.fit(x, y, epochs=2, batch_size=128, verbose=0, callbacks=[cb])
    store = open_store(tmp_path / "run")
    np.testing.assert_array_equal(store.epochs, [0, 1, 2, 3, 4])
    assert store.status == "complete"
    assert [e["kind"] for e in store.events].count("interrupted") == 1


def test_close_after_a_failed_fit_releases_the_store(tmp_path):
    x, y = _data()
    model = _compiled(precision="full")
    cb = IBCallback(x, y, tmp_path / "run", schedule="all")
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, epochs=3, batch_size=128, verbose=0, callbacks=[cb, _Boom(0)])
    cb.close()
    cb2 = IBCallback(x, y, tmp_path / "run", schedule="all")
    model.fit(x, y, epochs=1, batch_size=128, verbose=0, callbacks=[cb2])
    np.testing.assert_array_equal(open_store(tmp_path / "run").epochs, [0, 1, 2])


def test_run_metadata_reaches_the_manifest_and_the_plane_rows(tmp_path):
    from ibtoolkit import information_plane

    x, y = _data(64, seed=5)
    run = {"run_id": "bits-bnn-s7", "dataset": "bits", "model": "bnn-ste_sign", "precision": "binary",
           "variant": "ste_sign", "seed": 7, "training": {"lr": 0.01}}
    model = _compiled(widths=(4, 3), precision="binary", seed=7)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0,
              callbacks=[IBCallback(x, y, tmp_path / "r", schedule="all", run=run)])
    store = open_store(tmp_path / "r")
    assert store.manifest["run"] == run and store.run == run
    rows = information_plane(store, "exact", progress=False)
    assert len(rows) == 2 * 3  # 2 layers x epochs 0, 1, 2
    for key in ("dataset", "model", "precision", "variant", "seed"):
        assert (rows[key] == run[key]).all(), key
    # continuing the same run is fine; a different run in the same store is refused before training
    model.fit(x, y, epochs=1, verbose=0, callbacks=[IBCallback(x, y, tmp_path / "r", schedule="all", run=run)])
    with pytest.raises(StoreError, match="holds the run 'bits-bnn-s7', not 'other'"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[IBCallback(x, y, tmp_path / "r", run={**run, "run_id": "other"})])
    np.testing.assert_array_equal(open_store(tmp_path / "r").epochs, [0, 1, 2, 3])


@pytest.mark.parametrize("run, msg", [("s0", "run must be a dict"), ({"w": np.ones(2)}, "JSON-serialisable")])
def test_run_metadata_validated_at_construction(tmp_path, run, msg):
    x, y = _data(16)
    with pytest.raises(ValueError, match=msg):
        IBCallback(x, y, tmp_path / "r", run=run)


@pytest.mark.parametrize("background", [False, True])
def test_failed_commit_stops_fit_and_keeps_the_epochs_before_it(tmp_path, monkeypatch, background):
    """A commit that fails (the disk fills up at epoch 3) stops fit with its StoreError, raised in the
    training thread also when commits run on the background writer.  Nothing after it is written: no
    later epoch (no gap), no status "complete"; the run is marked interrupted and epochs 0-2 stay."""
    x, y = _data()
    model = _compiled(precision="binary")
    real = StoreWriter.append  # the writer ActivationStore.create returns

    def disk_full_at_3(self, epoch, *args, **kwargs):
        if epoch == 3:
            time.sleep(0.3)  # slow failure: the background writer has later epochs queued by then
            raise StoreError(f"{self.directory}: could not commit epoch 3: [Errno 28] No space left on device")
        return real(self, epoch, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "append", disk_full_at_3)
    cb = IBCallback(x, y, tmp_path / "run", schedule="all", background=background)
    with pytest.raises(StoreError, match="could not commit epoch 3"):
        model.fit(x, y, epochs=8, batch_size=128, verbose=0, callbacks=[cb])
    cb.close()
    store = open_store(tmp_path / "run")
    np.testing.assert_array_equal(store.epochs, [0, 1, 2])
    assert store.status == "interrupted"
    np.testing.assert_array_equal(store.read("hidden_1").shape, (3, 256, 10))


def test_epoch_0_runs_eagerly_while_xla_compiles_then_xla(tmp_path):
    """XLA compiles on a helper thread while Keras traces epoch 1, so epoch 0 of a new store is the
    taps' layers run eagerly on the initial weights (no graph traced but the XLA one) and every later
    epoch the XLA graph's, each equal (bit for bit) to that computation run afterwards on the same
    weights; a second fit on the same callback reuses the compiled graph."""
    x, y = _data()
    model = _compiled()
    initial = model.get_weights()
    cb = IBCallback(x, y, tmp_path / "run", schedule="all")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[cb])
    assert cb._extractor.jit_compiled is True and set(cb._extractor._graphs) == {True}  # never the plain one
    trained = model.get_weights()
    store = open_store(tmp_path / "run")
    xla = make_extractor(model, cb.taps, jit_compile=True)
    taps = tf.keras.Model(model.inputs, [t.tensor for t in cb.taps])
    model.set_weights(initial)
    for tap, codes in zip(cb.taps, taps(tf.constant(x), training=False)):
        np.testing.assert_array_equal(store.read(tap.name)[0], codes.numpy())
    model.set_weights(trained)
    for layer, codes in xla(x).items():
        np.testing.assert_array_equal(store.read(layer)[2], codes)
    extractor = cb._extractor
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[cb])
    assert cb._extractor is extractor and cb._compiling is None
    np.testing.assert_array_equal(open_store(tmp_path / "run").epochs, [0, 1, 2, 3])


def _host_op_model():
    inp = tf.keras.Input((12,))
    h = tf.keras.layers.Dense(3, name="d1")(inp)
    host = tf.keras.layers.Lambda(
        lambda t: tf.ensure_shape(tf.numpy_function(np.tanh, [t], tf.float32), (None, 3)), name="host")(h)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2, activation="softmax", name="out")(host))
    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", run_eagerly=True)
    return model


def test_xla_failure_in_the_background_compile(tmp_path):
    """A model XLA cannot compile: with "auto" every epoch comes from the plain graph; with True the
    first epoch after epoch 0 raises the compile error naming XLA and the store keeps epoch 0."""
    x, y = _data()
    model = _host_op_model()
    cb = IBCallback(x, y, tmp_path / "auto", schedule="all", layers=["host"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[cb])
    assert cb._extractor.jit_compiled is False
    store = open_store(tmp_path / "auto")
    np.testing.assert_array_equal(store.epochs, [0, 1, 2])
    w, b = model.get_layer("d1").get_weights()
    np.testing.assert_allclose(store.read("host")[-1], np.tanh(x @ w + b), atol=1e-6)

    cb = IBCallback(x, y, tmp_path / "strict", schedule="all", layers=["host"], jit_compile=True)
    with pytest.raises(RuntimeError, match="XLA could not compile"):
        _host_op_model().fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[cb])
    cb.close()
    store = open_store(tmp_path / "strict")
    np.testing.assert_array_equal(store.epochs, [0])
    assert store.status == "interrupted"
