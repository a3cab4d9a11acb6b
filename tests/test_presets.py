"""Presets: complete, consistent with the published setups they cite, and resolvable by the other modules."""
import numpy as np
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode)
from experiments import presets
from experiments.training import expand_runs

MODEL_KEYS = {"name", "precision", "variant", "widths", "optimizer", "lr", "batch_size", "epochs", "schedule",
              "n_points", "estimators", "batch_norm"}


STUDY = ["study", "study-bnn", "study-coarse", "study-digits", "study-fashion", "study-matched", "study-nulls",
         "study-positive", "study-resolution", "study-wide"]


def test_available_presets_and_default():
    assert presets.available_presets() == ["paper", "paper-digits", "paper-mnist", "quick", *STUDY, "tiny"]
    assert presets.DEFAULT_PRESET == "quick"


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match=r"unknown preset 'nope'; available: paper, paper-digits, paper-mnist, "
                                         r"quick, study, study-bnn, .*, study-resolution, study-wide, tiny"):
        presets.get_preset("nope")


def test_get_preset_returns_an_independent_copy():
    p = presets.get_preset("quick")
    epochs = p["models"][0]["epochs"]
    p["models"][0]["epochs"] = -5
    p["seeds"].append(99)
    fresh = presets.get_preset("quick")
    assert fresh["models"][0]["epochs"] == epochs > 0
    assert fresh["seeds"] == [0]


@pytest.mark.parametrize("name", ["tiny", "quick", "paper", "paper-digits", "paper-mnist", *STUDY])
def test_preset_is_complete_and_resolvable(name):
    from experiments.datasets import available_datasets
    from ibtoolkit import get_estimator
    from ibtoolkit.schedules import epoch_schedule

    p = presets.get_preset(name)
    assert p["name"] == name and p["description"] and p["source"]
    assert set(p["datasets"]) <= set(available_datasets())
    assert p["analysis"] in ("all", "test")
    assert len(p["seeds"]) == len(set(p["seeds"])) >= 1
    for m in p["models"]:
        assert MODEL_KEYS <= set(m), MODEL_KEYS - set(m)
        assert m["precision"] in ("full", "binary", "quantized")
        assert m["epochs"] >= 1 and m["batch_size"] >= 1
        assert m["lr"] > 0 or (m["lr"] == 0 and m["name"].endswith("-lr0"))  # lr 0: the study's null control
        assert all(isinstance(w, int) and w > 0 for w in m["widths"])
        recorded = epoch_schedule(m["schedule"], m["epochs"], m["n_points"])
        assert recorded[0] == 0 and recorded[-1] == m["epochs"]
        if m["precision"] == "binary":
            assert m["kernel_quantizer"] == m["variant"]
            assert m["estimators"][0] == {"name": "exact"}
        elif m["precision"] == "quantized":
            assert m["activation"] == m["variant"] and f"-{m['bits']}bit" in m["name"]
            assert m["bits"] == 8 or name == "study-coarse"
            assert m["estimators"][0] == {"name": "exact"}
        else:
            assert m["activation"] == m["variant"]
            assert "exact" not in [e["name"] for e in m["estimators"]]
        for spec in m["estimators"]:  # every parameter is one the estimator takes
            est = get_estimator(spec)
            assert est.params().items() >= {k: v for k, v in spec.items() if k != "name"}.items()
    runs = expand_runs(p)
    n_pairs = sum(len(m.get("datasets", p["datasets"])) for m in p["models"])
    assert len(runs) == n_pairs * len(p["seeds"])
    assert len({r["run_id"] for r in runs}) == len(runs)


def test_paper_presets_follow_reproduction_md():
    paper = presets.get_preset("paper")
    assert paper["datasets"] == ["tishby"] and len(paper["seeds"]) >= 3
    variants = {(m["precision"], m["variant"]) for m in paper["models"]}
    assert variants == {("full", "tanh"), ("full", "relu"), ("binary", "ste_sign"), ("binary", "approx_sign"),
                        ("binary", "swish_sign"), ("binary", "magnitude_aware_sign")}
    for m in paper["models"]:
        assert m["widths"] == [10, 7, 5, 4, 3] and m["epochs"] == 8000 and m["optimizer"] == "adam"
        assert (m["lr"], m["batch_size"]) == ((4e-4, 512) if m["precision"] == "full" else (1e-3, 256))
    tanh = next(m for m in paper["models"] if m["variant"] == "tanh")
    assert tanh["estimators"][0] == {"name": "binning", "n_bins": 30, "value_range": [-1.0, 1.0]}
    relu = next(m for m in paper["models"] if m["variant"] == "relu")
    assert relu["estimators"][0] == {"name": "binning", "n_bins": 100, "value_range": "data"}
    assert {"name": "kde", "noise_variance": 0.1} in tanh["estimators"]
    mnist = presets.get_preset("paper-mnist")
    assert mnist["analysis"] == "test" and mnist["datasets"] == ["mnist"]
    for m in mnist["models"]:
        assert m["widths"] == [1024, 20, 20, 20]
        assert (m["optimizer"], m["lr"], m["batch_size"]) == ("sgd", 1e-3, 128)


# -- the study (issue 19, docs/study/protocol.md) ------------------------------------------------------
from experiments import study_presets as sp  # noqa: E402

_TRAINING = ("optimizer", "lr", "batch_size", "epochs", "schedule", "n_points")


def _arms(name):
    p = presets.get_preset(name)
    return p, {(m["datasets"][0], m["name"]): m for m in p["models"]}


@pytest.mark.parametrize("name", STUDY)
def test_every_study_arm_shares_training_settings_schedule_and_seeds(name):
    from ibtoolkit.schedules import epoch_schedule

    p, arms = _arms(name)
    assert p["seeds"] == list(range(10)) and p["analysis"] == "all"
    assert p["split"] == {"test_fraction": 0.2, "seed": 0}
    schedules: dict[str, set] = {}
    for (dataset, _), m in arms.items():
        assert m["datasets"] == [dataset] and dataset in p["datasets"]
        assert m["widths"] == (sp.WIDE_WIDTHS if m["name"].endswith("-wide") else sp.WIDTHS[dataset])
        expected = dict(sp.SHARED, epochs=sp.EPOCHS.get(dataset, 8000))
        if m["name"].endswith("-lr0"):
            expected["lr"] = 0.0
        assert {k: m[k] for k in _TRAINING} == expected
        schedules.setdefault(dataset, set()).add(tuple(epoch_schedule(m["schedule"], m["epochs"], m["n_points"])))
    for dataset, found in schedules.items():
        assert len(found) == 1  # one recording schedule for every arm of a dataset
        recorded = np.array(found.pop())
        assert recorded.size == 150 and recorded[0] == 0 and recorded[-1] == sp.EPOCHS.get(dataset, 8000)
        gaps = (recorded[1:] - recorded[:-1]) / recorded[1:]
        assert gaps[recorded[1:] > 10].max() <= 0.1  # e_fit and e_peak placed within 10 % of their epoch


def test_study_is_the_union_of_its_parts():
    study, arms = _arms("study")
    assert study["datasets"] == ["tishby", "digits", "fashion_mnist"]
    assert study["dataset_options"] == {"fashion_mnist": {"split": "test", "download": False}}
    seen = set()
    for part in sp.STUDY_PARTS:
        _, part_arms = _arms(part)
        for key, m in part_arms.items():
            assert m == arms[key], key  # the same arm, the same dict: a part reuses the study's stores
            seen.add(key)
    assert seen == set(arms)
    runs = expand_runs(study)
    assert len(runs) == len(arms) * 10 == len({r["run_id"] for r in runs})


def test_study_bnn_arms_cover_four_quantizers_with_and_without_batch_norm():
    _, arms = _arms("study-bnn")
    got = {(m["kernel_quantizer"], m["input_quantizer"], m["batch_norm"]) for m in arms.values()}
    assert got == {(q, "ste_sign" if q == "magnitude_aware_sign" else q, bn)
                   for q in ("ste_sign", "approx_sign", "swish_sign", "magnitude_aware_sign") for bn in (False, True)}
    assert all(m["precision"] == "binary" and m["estimators"][0] == {"name": "exact"} for m in arms.values())
    assert all((m["first_layer"], m["last_layer"]) == ("full", "full") for m in arms.values())


def test_matched_arms_differ_only_in_precision_batch_norm_and_estimators():
    _, arms = _arms("study-matched")
    names = {k[1] for k in arms}
    assert names == {"dnn-tanh", "dnn-tanh-bn", "dnn-tanh-8bit", "dnn-tanh-bn-8bit", "bnn-ste_sign", "bnn-ste_sign-bn"}
    allowed = {"name", "precision", "variant", "activation", "bits", "batch_norm", "estimators",
               "input_quantizer", "kernel_quantizer", "first_layer", "last_layer"}
    base = arms[("tishby", "dnn-tanh")]
    for m in arms.values():
        differing = {k for k in set(base) | set(m) if base.get(k) != m.get(k)}
        assert differing <= allowed, differing
    assert arms[("tishby", "dnn-tanh-8bit")]["precision"] == "quantized"
    assert {"name": "exact"} in arms[("tishby", "dnn-tanh-bn-8bit")]["estimators"]


def test_null_controls_are_their_twins_with_one_change():
    _, nulls = _arms("study-nulls")
    _, study = _arms("study")
    twins = {"dnn-tanh-lr0": ("dnn-tanh", {"lr": 0.0}), "bnn-ste_sign-lr0": ("bnn-ste_sign", {"lr": 0.0}),
             "dnn-tanh-shuffled": ("dnn-tanh", {"labels": "shuffled"}),
             "bnn-ste_sign-bn-shuffled": ("bnn-ste_sign-bn", {"labels": "shuffled"})}
    for name, (twin, change) in twins.items():
        m = dict(nulls[("tishby", name)])
        expected = dict(study[("tishby", twin)], name=name, **change)
        assert m == expected
    relu = nulls[("tishby", "dnn-relu")]
    assert relu["activation"] == "relu"
    assert {"name": "binning", "n_bins": 100, "value_range": "data"} in relu["estimators"]
    assert {"name": "binning", "bin_size": 0.07} in relu["estimators"]


def test_resolution_grid_on_the_dnn_arms():
    _, arms = _arms("study-resolution")
    for m in arms.values():
        assert m["precision"] == "full"
        kde = sorted(e["noise_variance"] for e in m["estimators"] if e["name"] == "kde")
        assert kde == [1e-3, 1e-2, 1e-1]
        binnings = [e for e in m["estimators"] if e["name"] == "binning"]
        assert len(binnings) == 2 and binnings[0] != binnings[1]


@pytest.mark.parametrize("part,dataset,pool", [("study-digits", "digits", 1797),
                                               ("study-fashion", "fashion_mnist", 10_000)])
def test_other_datasets_keep_exact_estimates_below_the_pool_size(part, dataset, pool):
    p, arms = _arms(part)
    assert p["datasets"] == [dataset]
    # the last two hidden layers have at most `pool` reachable binary codes (the first two may saturate)
    assert all(2 ** w <= pool for w in sp.WIDTHS[dataset][-2:])
    precisions = sorted(m["precision"] for m in arms.values())
    assert precisions == ["binary"] * 4 + ["full", "quantized"]
    assert all(m["batch_norm"] for m in arms.values() if m["precision"] == "binary")


def test_wide_arms_are_matched_twins():
    _, arms = _arms("study-wide")
    assert {k[1] for k in arms} == {"dnn-tanh-wide", "dnn-tanh-8bit-wide", "bnn-ste_sign-bn-wide"}
    _, study = _arms("study")
    for (dataset, name), m in arms.items():
        narrow = study[(dataset, name[:-len("-wide")])]
        assert m == dict(narrow, name=name, widths=sp.WIDE_WIDTHS)


def test_exploratory_coarse_arms_are_the_8bit_twin_with_fewer_bits_and_stay_out_of_the_study():
    _, arms = _arms("study-coarse")
    _, study = _arms("study")
    names = {f"dnn-tanh-{b}bit{s}" for b in sp.COARSE_BITS for s in ("", "-shuffled")}
    assert set(arms) == {("tishby", n) for n in names} and not set(arms) & set(study)
    for b in sp.COARSE_BITS:
        arm = arms[("tishby", f"dnn-tanh-{b}bit")]
        assert arm == dict(study[("tishby", "dnn-tanh-8bit")], name=f"dnn-tanh-{b}bit", bits=b)
        assert arms[("tishby", f"dnn-tanh-{b}bit-shuffled")] == dict(arm, name=f"dnn-tanh-{b}bit-shuffled",
                                                                      labels="shuffled")

