"""Tests of ibtoolkit.plane: the information-plane table against brute-force ground truth.

The store holds deterministic codes of every 6-bit input (plus 16 repeated rows): for a
deterministic T and X uniform over the analysis rows, I(X;T) = H(T) and I(T;Y) = H(T) + H(Y) -
H(T, Y).  The reference computes those entropies by counting tuples in pure Python (no numpy), an
independent route from the estimators' array code.
"""
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import ibtoolkit
from ibtoolkit import Estimator, EstimateResult, get_estimator, register_estimator
from ibtoolkit.plane import BASE_COLUMNS, information_plane, read_plane, write_plane
from ibtoolkit.store import ActivationStore, open_store

EPOCHS = [0, 1, 2, 3, 5, 8, 13]
LAYERS = [("dense", 5), ("dense_1", 3), ("dense_2", 2)]
BINARY = [True, True, False]


# -- test estimators (module level, so loky workers can import them by module) ------------------
@register_estimator("plane_test_plugin")
class PluginEstimator(Estimator):
    """Plug-in I(X;T) = H(T) - H(T|X) and I(T;Y) = H(T) - H(T|Y) via np.unique row keys."""

    def __init__(self, tag=0):
        self.tag = tag
        self.calls = 0

    @staticmethod
    def _keys(a):
        return np.unique(a, axis=0, return_inverse=True)[1].ravel()

    @staticmethod
    def _h(*keys):
        joint = np.unique(np.stack(keys, axis=1), axis=0, return_counts=True)[1]
        p = joint / joint.sum()
        return float(-(p * np.log2(p)).sum())

    def _estimate(self, x, t, y):
        self.calls += 1
        kt, kx = self._keys(t), self._keys(x)
        h_t = self._h(kt)
        ixt = h_t - (self._h(kt, kx) - self._h(kx))
        ity = h_t - (self._h(kt, y) - self._h(y))
        return EstimateResult(ixt, ity, {"n_states": int(kt.max() + 1), "tag_seen": self.tag,
                                         "calls": self.calls})


@register_estimator("plane_test_raiser")
class RaisingEstimator(PluginEstimator):
    """Fails on every 3-unit layer (to check that failures become rows)."""

    def _estimate(self, x, t, y):
        if t.shape[1] == 3:
            raise RuntimeError("boom on width 3")
        return super()._estimate(x, t, y)


# -- ground truth ---------------------------------------------------------------------------------
def _entropy(items):
    counts = Counter(items)
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def brute_force(t, y):
    rows = [tuple(float(v) for v in r) for r in t.tolist()]
    labels = [int(v) for v in y.tolist()]
    h_t = _entropy(rows)
    return h_t, h_t + _entropy(labels) - _entropy(list(zip(rows, labels)))


def make_data():
    bits = ((np.arange(64)[:, None] >> np.arange(5, -1, -1)) & 1).astype(np.float32)
    x = np.concatenate([bits, bits[::4]])  # 80 rows, 64 distinct
    y = ((bits.sum(1) >= 3).astype(np.int64))
    y = np.concatenate([y, y[::4]])
    return x, y


def codes(x, layer_index, width, epoch, binary):
    """Deterministic representation: a seeded projection, sharper with every epoch."""
    rng = np.random.default_rng(100 * layer_index + 7)
    w = rng.normal(size=(x.shape[1], width))
    z = (2 * x - 1) @ w * (0.2 + 0.3 * epoch) + rng.normal(size=width)
    if binary:
        return np.where(z >= 0, 1.0, -1.0).astype(np.float32)
    return np.round(np.tanh(z), 1).astype(np.float32)


def metrics_of(epoch):
    return {"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + epoch / 40, "val_loss": 1.1 / (epoch + 1),
            "val_accuracy": 0.45 + epoch / 40}


def write_store(directory, diverged_at=None):
    x, y = make_data()
    run = {"model": "mlp-test", "precision": "binary", "variant": "ste_sign", "seed": 3}  # no dataset: its name
    with ActivationStore.create(directory, inputs=x, labels=y, layers=LAYERS, binary=BINARY, run=run,
                                model={"name": "mlp-test"}, dataset={"name": "bits6", "n": 80}) as store:
        for e in EPOCHS:
            acts = {name: codes(x, i, w, e, b) for i, ((name, w), b) in enumerate(zip(LAYERS, BINARY))}
            store.append(e, acts, metrics=metrics_of(e))
        if diverged_at is not None:
            store.add_event("diverged", "loss became NaN", epoch=diverged_at)
        store.set_status("complete")
    return directory


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("plane") / "run-a")


@pytest.fixture(scope="module")
def table(store_dir):
    return information_plane(str(store_dir), ["plane_test_plugin"], progress=False)


# -- tests ----------------------------------------------------------------------------------------
def test_values_match_brute_force(table):
    x, y = make_data()
    assert len(table) == len(LAYERS) * len(EPOCHS)
    assert (table["status"] == "ok").all()
    for row in table.itertuples():
        i = [n for n, _ in LAYERS].index(row.layer)
        t = codes(x, i, LAYERS[i][1], row.epoch, BINARY[i])
        ixt, ity = brute_force(t, y)
        assert row.ixt == pytest.approx(ixt, abs=1e-9)
        assert row.ity == pytest.approx(ity, abs=1e-9)
        assert row.n_states == len(set(map(tuple, t.tolist())))
    # the codes are not trivial: they move over epochs and differ between layers
    assert table["ixt"].nunique() > 5


def test_columns_and_metadata(table, store_dir):
    x, y = make_data()
    assert list(table.columns[:len(BASE_COLUMNS)]) == BASE_COLUMNS
    assert list(table.columns[-2:]) == ["status", "error"]
    for col in ("n_states", "tag_seen", "loss", "accuracy", "val_loss", "val_accuracy"):
        assert col in table.columns
    row = table.iloc[0]
    assert row["run"] == "run-a"
    assert (row["dataset"], row["model"], row["precision"], row["variant"], row["seed"]) == \
        ("bits6", "mlp-test", "binary", "ste_sign", 3)
    assert row["estimator"] == "plane_test_plugin"
    assert json.loads(row["estimator_params"]) == {"tag": 0}
    assert row["estimator_label"] == "plane_test_plugin(tag=0)"
    assert table["ixt_ceiling"].unique().tolist() == [pytest.approx(6.0)]  # 64 distinct of 80 rows
    p1 = y.mean()
    assert table["h_y"].iloc[0] == pytest.approx(-(p1 * math.log2(p1) + (1 - p1) * math.log2(1 - p1)), abs=1e-12)
    by_layer = table.drop_duplicates("layer").set_index("layer")
    assert by_layer["layer_index"].tolist() == [0, 1, 2]
    assert by_layer["width"].tolist() == [5, 3, 2]
    assert by_layer["binary"].tolist() == BINARY
    assert table["epoch"].tolist() == EPOCHS * len(LAYERS)
    for row in table.itertuples():
        assert row.loss == pytest.approx(metrics_of(row.epoch)["loss"])
        assert row.val_accuracy == pytest.approx(metrics_of(row.epoch)["val_accuracy"])
    # saturation: I(X;T) reaches log2(64) only if all 64 inputs get distinct codes
    assert (table["saturated"] == (table["ixt"] >= 6.0 - 1e-6)).all()
    assert pd.isna(table["subsample"]).all() and (table["n_samples"] == 80).all()


def test_open_store_object_equals_directory(store_dir, table):
    df = information_plane(open_store(store_dir), "plane_test_plugin", progress=False)
    pd.testing.assert_frame_equal(df.drop(columns="calls"), table.drop(columns="calls"))


def test_streams_within_the_chunk_budget(store_dir, table, monkeypatch):
    import ibtoolkit.plane as plane

    store = open_store(store_dir)
    sizes = []
    real_read = store.read

    def spy_read(layer, epochs=None):
        out = real_read(layer, epochs)
        sizes.append(out.shape[0])
        return out

    monkeypatch.setattr(store, "read", spy_read)
    monkeypatch.setattr(plane, "CHUNK_BYTES", 80 * 5 * 4 * 2)  # two epochs of the widest layer
    df = information_plane(store, "plane_test_plugin", progress=False)
    # budget 3200 bytes; widths 5, 3, 2 -> 2, 3 and 5 epochs per read (7 epochs each), never a whole layer
    assert sizes == [2, 2, 2, 1, 3, 3, 1, 5, 2]
    pd.testing.assert_frame_equal(df.drop(columns="calls"), table.drop(columns="calls"))


def test_one_instance_serves_all_layers_and_epochs(table):
    # 'calls' counts the estimate() calls of the one instance: 1, 2, ... in task order
    assert sorted(table["calls"].tolist()) == list(range(1, len(table) + 1))


def test_serial_equals_parallel(store_dir, table):
    par = information_plane(store_dir, ["plane_test_plugin"], n_jobs=2, progress=False, chunk=3)
    cols = [c for c in table.columns if c != "calls"]  # per-worker call counters differ by design
    pd.testing.assert_frame_equal(table[cols], par[cols])


def test_threading_backend_equals_serial(store_dir, table):
    from joblib import parallel_config

    with parallel_config(backend="threading"):
        par = information_plane(store_dir, ["plane_test_plugin"], n_jobs=2, progress=False, chunk=2)
    cols = [c for c in table.columns if c != "calls"]
    pd.testing.assert_frame_equal(table[cols], par[cols])


def test_failures_become_rows(store_dir):
    df = information_plane(store_dir, ["plane_test_plugin", {"name": "plane_test_raiser", "tag": 2}],
                           progress=False, epochs=[0, 3, 13])
    assert len(df) == 2 * 3 * 3
    bad = df[df["status"] == "failed"]
    assert set(bad["estimator"]) == {"plane_test_raiser"} and set(bad["layer"]) == {"dense_1"}
    assert len(bad) == 3 and bad["ixt"].isna().all() and bad["ity"].isna().all()
    assert bad["error"].str.contains("RuntimeError: boom on width 3").all()
    ok = df[df["status"] == "ok"]
    assert len(ok) == 15 and (ok["error"] == "").all()
    # the raiser's other layers agree with the plug-in estimator
    a = ok[ok.estimator == "plane_test_raiser"].set_index(["layer", "epoch"])["ixt"]
    b = ok[ok.estimator == "plane_test_plugin"].set_index(["layer", "epoch"])["ixt"].loc[a.index]
    np.testing.assert_allclose(a.values, b.values, atol=1e-12)


def test_diverged_epochs_are_invalid(tmp_path):
    directory = write_store(tmp_path / "run-div", diverged_at=8)
    df = information_plane(directory, "plane_test_plugin", progress=False)
    invalid = df[df["status"] == "invalid"]
    assert sorted(set(invalid["epoch"])) == [8, 13] and len(invalid) == 2 * len(LAYERS)
    assert invalid["ixt"].isna().all() and invalid["error"].str.contains("diverged").all()
    assert (df.loc[df["epoch"] < 8, "status"] == "ok").all()


def test_subsample_is_seeded_and_stated(store_dir):
    x, y = make_data()
    a = information_plane(store_dir, "plane_test_plugin", progress=False, subsample=40, random_state=7,
                          layers=["dense"])
    b = information_plane(store_dir, "plane_test_plugin", progress=False, subsample=40, random_state=7,
                          layers=["dense"])
    c = information_plane(store_dir, "plane_test_plugin", progress=False, subsample=40, random_state=8,
                          layers=["dense"])
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ity"], c["ity"])
    assert (a["subsample"] == 40).all() and (a["random_state"] == 7).all() and (a["n_samples"] == 40).all()
    idx = np.sort(np.random.default_rng(7).choice(80, size=40, replace=False))
    for row in a.itertuples():
        t = codes(x, 0, 5, row.epoch, True)[idx]
        ixt, ity = brute_force(t, y[idx])
        assert row.ixt == pytest.approx(ixt, abs=1e-9) and row.ity == pytest.approx(ity, abs=1e-9)
    assert a["ixt_ceiling"].iloc[0] == pytest.approx(math.log2(len({tuple(r) for r in x[idx].tolist()})))


def test_selection_and_bad_arguments(store_dir):
    df = information_plane(store_dir, "plane_test_plugin", layers=["dense_2", "dense"], epochs=[13, 0],
                           progress=False)
    assert df["layer"].tolist() == ["dense", "dense", "dense_2", "dense_2"]  # depth order
    assert df["epoch"].tolist() == [0, 13, 0, 13]
    with pytest.raises(ValueError, match="unknown layer"):
        information_plane(store_dir, "plane_test_plugin", layers=["nope"], progress=False)
    with pytest.raises(ValueError, match="not recorded"):
        information_plane(store_dir, "plane_test_plugin", epochs=[4], progress=False)
    with pytest.raises(ValueError, match="unknown estimator"):
        information_plane(store_dir, "no_such_estimator", progress=False)
    with pytest.raises(ValueError, match="subsample"):
        information_plane(store_dir, "plane_test_plugin", subsample=81, progress=False)
    with pytest.raises(ValueError, match="n_jobs"):
        information_plane(store_dir, "plane_test_plugin", n_jobs=0, progress=False)
    with pytest.raises(ValueError, match="empty"):
        information_plane(store_dir, [], progress=False)


def test_csv_round_trip(tmp_path, store_dir):
    df = information_plane(store_dir, ["plane_test_plugin", "plane_test_raiser"], progress=False,
                           epochs=[0, 13])
    path = write_plane(df, tmp_path / "out" / "information_plane.csv")
    back = read_plane(path)
    pd.testing.assert_frame_equal(df, back)
    assert isinstance(back["estimator_params"].iloc[0], str)


def test_exact_estimator_on_a_store(store_dir):
    x, y = make_data()
    df = information_plane(store_dir, "exact", layers=["dense", "dense_1"], progress=False)
    for row in df.itertuples():
        i = [n for n, _ in LAYERS].index(row.layer)
        ixt, ity = brute_force(codes(x, i, LAYERS[i][1], row.epoch, True), y)
        assert row.status == "ok"
        assert row.ixt == pytest.approx(ixt, abs=1e-9) and row.ity == pytest.approx(ity, abs=1e-9)


# -- faulty plugins: reported by name in the failed rows, the built-ins unaffected -----------------
@register_estimator("plane_test_nan")
def _nan_plugin(x, t, y):
    """Returns NaN on the 2-unit layer, a finite plug-in value elsewhere."""
    return (math.nan, 0.0) if t.shape[1] == 2 else (1.0, 0.5)


@register_estimator("plane_test_wrong_type")
def _wrong_type_plugin(x, t, y):
    return {"ixt": 1.0}


@pytest.mark.parametrize("name, layers, message", [
    ("plane_test_nan", {"dense_2"}, "ValueError: estimator 'plane_test_nan' returned a non-finite value (ixt=nan"),
    ("plane_test_wrong_type", {"dense", "dense_1", "dense_2"},
     "ValueError: estimator 'plane_test_wrong_type' returned {'ixt': 1.0}; a function estimator must return "
     "(ixt, ity) as two numbers in bits"),
])
def test_plugin_returning_nan_or_a_wrong_type_is_a_failed_row_named(store_dir, name, layers, message):
    df = information_plane(store_dir, [name, "binning"], progress=False, epochs=[0, 13])
    bad = df[df["status"] == "failed"]
    assert set(bad["estimator"]) == {name} and set(bad["layer"]) == layers and len(bad) == 2 * len(layers)
    assert bad["error"].str.startswith(message).all() and bad["ixt"].isna().all()
    assert (df.loc[df["estimator"] == "binning", "status"] == "ok").all()
    assert np.isfinite(df.loc[df["status"] == "ok", ["ixt", "ity"]].to_numpy()).all()


# -- the fit step: per (run, layer), over every recorded epoch, the same serial and parallel ---------
RELU_WIDTHS = [("relu_1", 6), ("relu_2", 4), ("relu_3", 3)]


def write_relu_store(directory):
    """Unbounded ReLU layers whose range grows with the epoch and differs per layer."""
    x, y = make_data()
    model = {"name": "mlp-relu", "precision": "full", "variant": "relu", "seed": 1}
    acts_by_epoch = {}
    with ActivationStore.create(directory, inputs=x, labels=y, layers=RELU_WIDTHS, binary=[False] * 3,
                                model=model, dataset={"name": "bits6", "n": 80}) as store:
        for e in EPOCHS:
            rng = np.random.default_rng(e)
            acts = {name: np.maximum(0.0, (2 * x - 1) @ rng.normal(size=(6, w)) * (1 + i) * (1 + e / 4)
                                     ).astype(np.float32)
                    for i, (name, w) in enumerate(RELU_WIDTHS)}
            acts_by_epoch[e] = acts
            store.append(e, acts, metrics=metrics_of(e))
        store.set_status("complete")
    return directory, acts_by_epoch


def test_data_range_binning_is_fitted_per_layer_over_the_run_and_equal_serial_and_parallel(tmp_path):
    directory, acts = write_relu_store(tmp_path / "run-relu")
    spec = {"name": "binning", "n_bins": 10, "value_range": "data"}
    serial = information_plane(directory, [spec], progress=False)
    parallel = information_plane(directory, [spec], n_jobs=2, progress=False, chunk=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert (serial["status"] == "ok").all()
    for name, _ in RELU_WIDTHS:
        every = np.stack([acts[e][name] for e in EPOCHS])
        ranges = serial.loc[serial["layer"] == name, "bin_range"].map(json.loads)
        assert all(r == [float(every.min()), float(every.max())] for r in ranges), name
    assert (serial["clipped_fraction"] == 0.0).all()
    # selecting epochs for estimation does not change the fit: the same range, the same values
    some = information_plane(directory, [spec], epochs=[0, 1], progress=False)
    pd.testing.assert_frame_equal(some.reset_index(drop=True),
                                  serial[serial["epoch"].isin([0, 1])].reset_index(drop=True))


def test_data_range_binning_is_the_same_on_dask(tmp_path):
    """The fitted range travels to Dask workers too (docs/estimators.md promises serial = joblib = Dask)."""
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    directory, _ = write_relu_store(tmp_path / "run-relu-dask")
    spec = {"name": "binning", "n_bins": 10, "value_range": "data"}
    serial = information_plane(directory, [spec], progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with parallel_config(backend="dask"), distributed.get_task_stream(client) as stream:
            on_dask = information_plane(directory, [spec], n_jobs=2, progress=False, chunk=2)
    assert len(stream.data) > 0                              # the tasks really ran on the Dask workers
    pd.testing.assert_frame_equal(serial, on_dask)


def test_a_fixed_range_that_clips_warns_once_per_layer(tmp_path):
    directory, _ = write_relu_store(tmp_path / "run-clip")
    with pytest.warns(RuntimeWarning, match="clipped values") as caught:
        df = information_plane(directory, [{"name": "binning", "n_bins": 10, "value_range": [0, 1]}], progress=False)
    clip = [w for w in caught if "clipped values" in str(w.message)]
    assert len(clip) == len(RELU_WIDTHS)
    assert (df["clipped_fraction"] > 0).any() and (df["clipped_fraction"] <= 1).all()


@register_estimator("plane_test_unfittable")
class UnfittableEstimator(PluginEstimator):
    """Needs the epochs to fit, and refuses the 3-unit layer there."""

    @property
    def needs_fit_data(self):
        return True

    def _fit(self, x, epochs, y):
        widths = [t.shape[1] for t in epochs]
        self.seen = len(widths)
        if widths[0] == 3:
            raise RuntimeError("cannot fit width 3")

    def fitted_params(self):
        return {"seen": self.seen}

    def set_fitted(self, seen):
        self.seen = seen
        return self


def test_fit_sees_every_recorded_epoch_and_a_failed_fit_fails_its_rows(store_dir):
    for n_jobs in (1, 2):
        df = information_plane(store_dir, ["plane_test_unfittable"], epochs=[0, 13], n_jobs=n_jobs, progress=False)
        bad = df[df["layer"] == "dense_1"]
        assert (bad["status"] == "failed").all() and bad["error"].str.contains("cannot fit width 3").all()
        good = df[df["layer"] != "dense_1"]
        assert (good["status"] == "ok").all() and (good["seen"] == len(EPOCHS)).all()


def test_live_estimators_refuse_a_fit_on_the_future():
    x, y = make_data()
    with pytest.raises(ValueError, match="live estimators cannot be fitted"):
        ibtoolkit.IBCallback(x, y, estimators=[{"name": "binning", "value_range": "data"}])


def test_a_users_store_without_run_metadata_gets_dataset_precision_and_variant(tmp_path):
    """IBCallback without run=: the rows still say which dataset (unnamed), precision (from the layers)
    and variant (the model name), so the phase table has no NaN in those columns."""
    from ibtoolkit.phases import phase_table
    from ibtoolkit.store import ActivationStore

    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    for name, binary in (("bnn", [True, True]), ("mix", [True, False])):
        with ActivationStore.create(tmp_path / name, inputs=x, labels=y, layers=[("a", 4), ("b", 3)],
                                    binary=binary, model={"name": f"my_{name}"}) as store:
            for e in range(4):
                store.append(e, {"a": np.sign(rng.normal(size=(64, 4))) + 0.0,
                                 "b": np.sign(rng.normal(size=(64, 3))) + 0.0})
        df = ibtoolkit.information_plane(tmp_path / name, "binning", progress=False)
        assert set(df["dataset"]) == {"unnamed"} and set(df["variant"]) == {f"my_{name}"}
        assert set(df["precision"]) == {"binary" if name == "bnn" else "mixed"}
        table = phase_table(df[df["status"] == "ok"], n_boot=10)
        assert table[["dataset", "model", "precision", "variant"]].notna().all().all()


# -- a deterministic estimator runs once per distinct array of a layer ---------------------------
# A BNN whose signs stopped flipping records the same codes epoch after epoch; the plane reuses the
# first estimate.  This store repeats codes on a known pattern (epochs 0..7 record the code arrays
# A B B A C C C D), so the number of estimator calls is known exactly, and every row is checked
# against the brute-force entropies of its own epoch's codes.
REUSE_EPOCHS = list(range(8))
PHASE = [0, 1, 1, 0, 2, 2, 2, 3]  # which code array each epoch records: 4 distinct of 8
REUSE_LAYERS = [("codes", 4), ("continuous", 3)]


class CountingPlugin(PluginEstimator):
    """The plug-in reference, declared deterministic; counts its calls per width."""

    deterministic = True

    def __init__(self, tag=0):
        super().__init__(tag)
        self.widths = []

    def _estimate(self, x, t, y):
        self.widths.append(t.shape[1])
        res = super()._estimate(x, t, y)
        return type(res)(res.ixt, res.ity, {"n_states": res.extras["n_states"]})


class NotDeclared(CountingPlugin):
    deterministic = False


def _acts(x, epoch):
    # the ±1 layer repeats by PHASE; the continuous layer changes every epoch
    return {"codes": codes(x, 0, 4, PHASE[epoch], True),
            "continuous": codes(x, 1, 3, epoch, False)}


@pytest.fixture(scope="module")
def repeating_store(tmp_path_factory):
    x, y = make_data()
    directory = tmp_path_factory.mktemp("reuse") / "run-r"
    with ActivationStore.create(directory, inputs=x, labels=y, layers=REUSE_LAYERS, binary=[True, False]) as store:
        for e in REUSE_EPOCHS:
            store.append(e, _acts(x, e))
        store.set_status("complete")
    return directory


def test_the_codes_repeat_as_designed():
    x, _ = make_data()
    arrays = [_acts(x, e)["codes"].tobytes() for e in REUSE_EPOCHS]
    assert len(set(arrays)) == 4
    assert len({_acts(x, e)["continuous"].tobytes() for e in REUSE_EPOCHS}) == len(REUSE_EPOCHS)


@pytest.mark.parametrize("chunk", [16, 2])   # 2: the earlier equal array is in another chunk, read again
@pytest.mark.parametrize("colliding", [False, True])
def test_a_deterministic_estimator_runs_once_per_distinct_array(repeating_store, chunk, colliding, monkeypatch):
    store = open_store(repeating_store)
    if colliding:  # every block "has the same checksum": only the element-wise comparison tells them apart
        monkeypatch.setattr(store, "block_checksums", lambda layer: {e: 7 for e in REUSE_EPOCHS})
    est = CountingPlugin()
    table = information_plane(store, est, progress=False, chunk=chunk)
    # A, B, C, D once each; with one checksum for all, every array is compared with the slot's first (A):
    # only epoch 3 (A again) is reused, and correctness never rests on the checksum
    assert est.widths.count(4) == (7 if colliding else 4)
    assert est.widths.count(3) == len(REUSE_EPOCHS)     # continuous: every epoch differs
    x, y = make_data()
    for row in table.itertuples():
        t = _acts(x, row.epoch)[row.layer]
        ixt, ity = brute_force(t, y)
        assert row.status == "ok"
        assert row.ixt == pytest.approx(ixt, abs=1e-9) and row.ity == pytest.approx(ity, abs=1e-9)
        assert row.n_states == len(set(map(tuple, t.tolist())))


def test_an_undeclared_estimator_or_reuse_off_runs_on_every_epoch_with_the_same_table(repeating_store):
    est, reused, off = NotDeclared(), CountingPlugin(), CountingPlugin()
    table = information_plane(repeating_store, est, progress=False)
    assert len(est.widths) == 2 * len(REUSE_EPOCHS)
    every = information_plane(repeating_store, off, progress=False, reuse=False)
    assert len(off.widths) == 2 * len(REUSE_EPOCHS)
    pd.testing.assert_frame_equal(every, information_plane(repeating_store, CountingPlugin(), progress=False))
    other = information_plane(repeating_store, reused, progress=False)
    cols = [c for c in table.columns if c not in ("estimator", "estimator_label")]
    pd.testing.assert_frame_equal(table[cols], other[cols])


@pytest.mark.parametrize("name", ["exact", "binning", "kde", "ksg"])
def test_builtins_reuse_only_what_a_fresh_estimate_returns(repeating_store, name):
    assert get_estimator(name).deterministic
    layers = ["codes"] if name == "exact" else None
    serial = information_plane(repeating_store, name, layers=layers, progress=False)
    parallel = information_plane(repeating_store, name, layers=layers, n_jobs=2, chunk=3, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    x, y = make_data()
    for row in serial.itertuples():
        fresh = get_estimator(name)  # a new instance per epoch: nothing cached anywhere
        fresh.fit(x, [_acts(x, e)[row.layer] for e in REUSE_EPOCHS], y)
        res = fresh.estimate(x, _acts(x, row.epoch)[row.layer], y)
        assert (row.ixt, row.ity) == (res.ixt, res.ity)
