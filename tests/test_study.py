"""A miniature of the `study` preset end to end (docs/study/protocol.md): every kind of arm trains,
records and is estimated; the null controls behave as their definition says.

Ground truth: with learning rate 0 and no BatchNorm the weights never change, so the ±1 codes, and
``exact``'s I(X;T), are identical at every recorded epoch; a deterministic layer on the 4096 distinct
inputs of the 12-bit task has I(X;T) = H(T), the plug-in entropy of its recorded codes; the
shuffled-labels arm records the fixed permutation of the true labels defined in experiments.training.
"""
import numpy as np
import pandas as pd
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
from experiments import presets
from experiments.datasets import tishby_dataset
from experiments.run import run_experiment
from experiments.training import _shuffled_labels, expand_runs, run_directory
from ibtoolkit import open_store

KEEP = {("tishby", "dnn-tanh"), ("tishby", "dnn-tanh-8bit"), ("tishby", "bnn-ste_sign-bn"),
        ("tishby", "bnn-ste_sign-lr0"), ("tishby", "dnn-tanh-shuffled"), ("digits", "bnn-magnitude_aware_sign-bn")}


def _mini_study() -> dict:
    p = presets.get_preset("study")
    p["datasets"] = ["tishby", "digits"]
    p["seeds"] = [0, 1]
    models = [m for m in p["models"] if (m["datasets"][0], m["name"]) in KEEP]
    for m in models:
        m.update(epochs=3, n_points=4)
        m["estimators"] = m["estimators"][:1]  # exact for discrete arms, binning 30 bins for the tanh DNNs
    p["models"] = models
    return p


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    preset = _mini_study()
    return preset, run_experiment(preset, out, progress=False, figures=False)


def _plug_in_entropy(codes: np.ndarray) -> float:
    _, counts = np.unique(codes, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_every_arm_trains_records_and_is_estimated(mini):
    preset, result = mini
    assert result["failures"] == []
    runs = expand_runs(preset)
    assert len(runs) == len(KEEP) * 2 == len(result["stores"])
    plane = result["plane"]
    assert set(plane["status"]) == {"ok"}
    assert set(plane["run"]) == {r["run_id"] for r in runs}
    for r in runs:
        store = open_store(run_directory(result["out"], r))
        assert store.status == "complete" and list(store.epochs) == [0, 1, 2, 3]
        assert store.run["training"]["model"]["epochs"] == 3
    assert (result["out"] / "phases.csv").is_file()
    estimators = plane.groupby("model")["estimator"].unique().map(list).to_dict()
    assert estimators["dnn-tanh-8bit"] == ["exact"] and estimators["dnn-tanh"] == ["binning"]


def test_learning_rate_zero_leaves_every_code_and_estimate_unchanged(mini):
    _, result = mini
    rows = result["plane"].query("model == 'bnn-ste_sign-lr0'")
    for _, g in rows.groupby(["run", "layer"]):
        assert g["ixt"].nunique() == 1 and g["ity"].nunique() == 1
    store = open_store(result["stores"]["tishby-bnn-ste_sign-lr0-s0"])
    for layer in store.layers:
        codes = store.read(layer)
        assert all(np.array_equal(codes[0], c) for c in codes[1:])


def test_quantized_arm_is_measured_exactly_on_its_8bit_codes(mini):
    _, result = mini
    store = open_store(result["stores"]["tishby-dnn-tanh-8bit-s1"])
    taps = store.manifest["model"]["taps"]  # the k-bit layers are declared discrete, as exact requires
    assert [(t["discrete"], t["levels"], t["binary"]) for t in taps] == [(True, 256, False)] * 5
    rows = result["plane"].query("run == 'tishby-dnn-tanh-8bit-s1'").set_index(["layer", "epoch"])
    levels = np.linspace(-1.0, 1.0, 256, dtype=np.float32)
    for layer in store.layers:
        for epoch in (0, 3):
            codes = store.read_epoch(layer, epoch)
            assert np.abs(codes[..., None] - levels).min(axis=-1).max() < 1e-6
            assert rows.loc[(layer, epoch), "ixt"] == pytest.approx(_plug_in_entropy(codes), abs=1e-9)


def test_shuffled_labels_arm_trains_and_is_measured_on_the_permuted_labels(mini):
    _, result = mini
    _, y = tishby_dataset()
    for seed in (0, 1):
        store = open_store(result["stores"][f"tishby-dnn-tanh-shuffled-s{seed}"])
        labels = np.asarray(store.labels)
        assert labels.sum() == y.sum() == 2118
        assert not np.array_equal(labels, y)
        # the pool is recorded in dataset order; the permutation acts on (train rows, test rows)
        from experiments.datasets import train_test_split

        train, test = train_test_split(4096, 0.2, 0)
        order = np.concatenate([train, test])
        expected = np.empty_like(y)
        expected[order] = _shuffled_labels(y[order])
        np.testing.assert_array_equal(labels, expected)  # one permutation for both seeds
    true_store = open_store(result["stores"]["tishby-dnn-tanh-s0"])
    np.testing.assert_array_equal(np.asarray(true_store.labels), y)


def test_a_dataset_choice_keeps_only_the_arms_of_that_dataset():
    p = presets.get_preset("study")
    p["datasets"] = ["digits"]
    runs = expand_runs(p)
    assert {r["dataset"] for r in runs} == {"digits"}
    assert len(runs) == 6 * 10


def test_planes_on_training_and_held_out_rows_of_the_recorded_pool(mini):
    from experiments.analysis_sets import RowSubset, analysis_rows, subset_plane
    from ibtoolkit import get_estimator

    preset, result = mini
    cfg = next(r for r in expand_runs(preset) if r["run_id"] == "tishby-bnn-ste_sign-bn-s0")
    store = open_store(result["stores"][cfg["run_id"]])
    rows = analysis_rows(cfg, len(store.labels))
    assert (len(rows["train"]), len(rows["held-out"])) == (3277, 819)
    np.testing.assert_array_equal(np.sort(np.concatenate([rows["train"], rows["held-out"]])), rows["all"])
    exact = get_estimator("exact")
    x, y = np.asarray(store.inputs), np.asarray(store.labels)
    for samples in ("train", "held-out"):
        df = subset_plane(store, ["exact"], rows[samples], samples, progress=False)
        assert set(df["samples"]) == {samples} and set(df["n_samples"]) == {len(rows[samples])}
        assert df["ixt_ceiling"].iloc[0] == pytest.approx(np.log2(len(rows[samples])))
        for layer in ("hidden_1", "hidden_5"):
            t = store.read_epoch(layer, 3)[rows[samples]]
            direct = exact.estimate(x[rows[samples]], t, y[rows[samples]])
            got = df.query("layer == @layer and epoch == 3").iloc[0]
            assert (got["ixt"], got["ity"]) == (direct.ixt, direct.ity)
    with pytest.raises(ValueError, match="sorted, distinct"):
        RowSubset(store, np.array([3, 1]))
    with pytest.raises(ValueError, match="only analysis='all'"):
        analysis_rows(dict(cfg, analysis="test"), 4096)


def test_pilot_centre_of_mass_of_rises_and_falls():
    from experiments.study_pilots import centre_of_mass

    epochs = np.array([0, 9, 99, 999, 9999])  # log10(e + 1) = 0, 1, 2, 3, 4
    ity = np.array([0.0, 0.2, 0.8, 0.8, 0.8])  # rises of 0.2 at u = 0.5 and 0.6 at u = 1.5
    ixt = np.array([5.0, 6.0, 6.0, 4.0, 3.0])  # falls of 2 at u = 2.5 and 1 at u = 3.5; the rise is ignored
    assert centre_of_mass(epochs, ity, rising=True) == pytest.approx((0.2 * 0.5 + 0.6 * 1.5) / 0.8)
    assert centre_of_mass(epochs, ixt, rising=False) == pytest.approx((2 * 2.5 + 1 * 3.5) / 3)
    assert np.isnan(centre_of_mass(epochs, np.ones(5), rising=False))


def test_the_study_report_applies_the_protocol_to_the_run(mini):
    _, result = mini
    assert result["study_report"] == result["out"] / "study" / "report.md"
    outcomes = pd.read_csv(result["out"] / "study" / "outcomes.csv")
    primary = outcomes[outcomes["family"] == "1 primary"]
    assert set(zip(primary["dnn"], primary["bnn"])) == {("dnn-tanh-8bit", "bnn-ste_sign-bn")}
    assert set(primary["estimator_dnn"]) == {"exact"}
    # two seeds, four recorded epochs, controls missing: nothing may be decided
    assert set(outcomes["outcome"]) == {"undetermined"}
    controls = pd.read_csv(result["out"] / "study" / "controls.csv")
    measured = controls[controls["detail"] != "not run"]
    assert {("learning rate 0", "bnn-ste_sign-lr0"), ("shuffled labels", "dnn-tanh-shuffled")} <= set(
        zip(measured["control"], measured["arm"]))


def test_train_and_held_out_planes_of_every_study_run(mini):
    from experiments.study_report import read_planes
    from experiments.study_subsets import study_subset_planes
    from experiments.study_verdict import samples_table

    preset, result = mini
    subsets = study_subset_planes(result["out"], progress=False)
    assert set(subsets["samples"]) == {"train", "held-out"}
    n = subsets.groupby(["dataset", "samples"])["n_samples"].unique().map(list).to_dict()
    # the seeded 80/20 split of each pool: 4096 -> 3277 + 819, 1797 -> 1438 + 359 (digits)
    assert n == {("tishby", "train"): [3277], ("tishby", "held-out"): [819],
                 ("digits", "train"): [1438], ("digits", "held-out"): [359]}
    assert set(subsets["run"]) == set(result["plane"]["run"])
    path = result["out"] / "subsets.csv"
    subsets.to_csv(path, index=False)
    table = samples_table(read_planes([result["out"] / "information_plane.csv", path]))
    assert len(table) == result["plane"].groupby(["model", "layer"]).ngroups   # one estimator per arm here
    assert table["train"].str.contains(r"of 2 \(N = (?:3277|1438)\)").all()
    assert table["held-out"].str.contains(r"of 2 \(N = (?:819|359)\)").all()
