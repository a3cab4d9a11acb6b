"""Presets: complete, consistent with the published setups they cite, and resolvable by the other modules."""
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode)
from experiments import presets
from experiments.training import expand_runs

MODEL_KEYS = {"name", "precision", "variant", "widths", "optimizer", "lr", "batch_size", "epochs", "schedule",
              "n_points", "estimators", "batch_norm"}


def test_available_presets_and_default():
    assert presets.available_presets() == ["paper", "paper-digits", "paper-mnist", "quick", "tiny"]
    assert presets.DEFAULT_PRESET == "quick"


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match=r"unknown preset 'nope'; available: paper, paper-digits, paper-mnist, "
                                         r"quick, tiny"):
        presets.get_preset("nope")


def test_get_preset_returns_an_independent_copy():
    p = presets.get_preset("quick")
    epochs = p["models"][0]["epochs"]
    p["models"][0]["epochs"] = -5
    p["seeds"].append(99)
    fresh = presets.get_preset("quick")
    assert fresh["models"][0]["epochs"] == epochs > 0
    assert fresh["seeds"] == [0]


@pytest.mark.parametrize("name", ["tiny", "quick", "paper", "paper-digits", "paper-mnist"])
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
        assert m["precision"] in ("full", "binary")
        assert m["epochs"] >= 1 and m["batch_size"] >= 1 and m["lr"] > 0
        assert all(isinstance(w, int) and w > 0 for w in m["widths"])
        recorded = epoch_schedule(m["schedule"], m["epochs"], m["n_points"])
        assert recorded[0] == 0 and recorded[-1] == m["epochs"]
        if m["precision"] == "binary":
            assert m["kernel_quantizer"] == m["variant"]
            assert m["estimators"][0] == {"name": "exact"}
        else:
            assert m["activation"] == m["variant"]
            assert "exact" not in [e["name"] for e in m["estimators"]]
        for spec in m["estimators"]:  # every parameter is one the estimator takes
            est = get_estimator(spec)
            assert est.params().items() >= {k: v for k, v in spec.items() if k != "name"}.items()
    runs = expand_runs(p)
    assert len(runs) == len(p["datasets"]) * len(p["models"]) * len(p["seeds"])
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
