"""``experiments.run`` trains the seeds of a (dataset, model) stacked by default; ``--no-stack`` one by one."""
import json

import numpy as np
import pandas as pd
import pytest

from experiments import stacked_training, training
from experiments.presets import get_preset
from experiments.run import main
from ibtoolkit import open_store


def _runs(seeds):
    preset = get_preset("tiny")
    preset["seeds"] = list(seeds)
    return training.expand_runs(preset)


def test_groups_are_chunks_of_one_dataset_and_model():
    runs = _runs(range(5))
    groups = stacked_training.training_groups(runs, stack=True, max_members=2)
    assert [[c["run_id"] for c in g] for g in groups] == [
        ["tishby-dnn-tanh-s0", "tishby-dnn-tanh-s1"], ["tishby-dnn-tanh-s2", "tishby-dnn-tanh-s3"],
        ["tishby-dnn-tanh-s4"], ["tishby-bnn-ste_sign-s0", "tishby-bnn-ste_sign-s1"],
        ["tishby-bnn-ste_sign-s2", "tishby-bnn-ste_sign-s3"], ["tishby-bnn-ste_sign-s4"]]
    assert stacked_training.training_groups(runs, stack=False) == [[c] for c in runs]
    # the memory budget bounds a chunk: 4 * 4096 * 12 bytes per member of the 12-bit data
    small = stacked_training.training_groups(runs, stack=True, budget=3 * 4 * 4096 * 12)
    assert max(len(g) for g in small) == 3
    with pytest.raises(ValueError, match="differ only in the seed"):
        stacked_training.train_group([runs[0], runs[-1]], "unused")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacked")
    outs = {}
    for label, extra in (("stacked", []), ("alone", ["--no-stack"])):
        out = root / label
        code = main(["--preset", "tiny", "--seeds", "2", "--out", str(out), "--estimator", "binning",
                     "--no-progress", "--quiet", *extra])
        assert code == 0
        outs[label] = out
    return outs


def test_stacked_and_one_by_one_give_the_same_layout_columns_and_metadata(both):
    stacked, alone = both["stacked"], both["alone"]
    names = sorted(p.name for p in (alone / "runs").iterdir())
    assert sorted(p.name for p in (stacked / "runs").iterdir()) == names and len(names) == 4
    for name in names:
        a, b = open_store(stacked / "runs" / name), open_store(alone / "runs" / name)
        assert a.status == b.status == "complete"
        assert a.run == b.run and list(a.epochs) == list(b.epochs)
        assert a.layers == b.layers and a.binary == b.binary
        assert set(a.metrics[4]) == set(b.metrics[4])
        # member s starts from exactly the weights of seed s trained alone
        for layer in a.layers:
            np.testing.assert_allclose(a.read(layer, 0), b.read(layer, 0), atol=5e-6)
        assert a.manifest["dataset"] == b.manifest["dataset"]
    ta, tb = (pd.read_csv(o / "information_plane.csv") for o in (stacked, alone))
    assert list(ta.columns) == list(tb.columns) and len(ta) == len(tb)
    assert (stacked / "report.md").is_file()


def test_resume_keeps_complete_stacked_stores(both, monkeypatch):
    out = both["stacked"]
    before = {p.name: json.loads((p / "manifest.json").read_text())["created"] for p in (out / "runs").iterdir()}
    monkeypatch.setattr(stacked_training, "_train_stacked", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(training, "train_run", lambda *a, **k: pytest.fail("retrained"))
    assert main(["--preset", "tiny", "--seeds", "2", "--out", str(out), "--estimator", "binning", "--resume",
                 "--no-progress", "--quiet"]) == 0
    after = {p.name: json.loads((p / "manifest.json").read_text())["created"] for p in (out / "runs").iterdir()}
    assert after == before
