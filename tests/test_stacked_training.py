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


def _interrupt(directory, epochs=2):
    """Rewrite a complete store as one killed after ``epochs`` epochs (status interrupted, no checkpoint)."""
    import shutil

    from ibtoolkit.store import ActivationStore

    old = open_store(directory)
    acts = {layer: old.read(layer) for layer in old.layers}
    first = [int(e) for e in old.epochs[:epochs]]
    meta, x, y = old.manifest, np.array(old.inputs), np.array(old.labels)
    shutil.rmtree(directory)
    with ActivationStore.create(directory, inputs=x, labels=y,
                                layers=[(name, old.widths[name]) for name in old.layers],
                                binary=[old.binary[name] for name in old.layers], run=meta["run"],
                                dataset=meta["dataset"], model=meta["model"]) as store:
        for i, epoch in enumerate(first):
            store.append(epoch, {layer: a[i] for layer, a in acts.items()})
        store.set_status("interrupted")


def test_resume_restarts_a_killed_stacked_chunk_stacked_and_keeps_its_partial_stores(both, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(both["stacked"], out)
    killed = ["tishby-dnn-tanh-s0", "tishby-dnn-tanh-s1"]
    for run_id in killed:
        _interrupt(out / "runs" / run_id)
        assert training.continuable(out / "runs" / run_id, next(c for c in _runs([0, 1]) if c["run_id"] == run_id))
    stacked = []
    real = stacked_training._train_stacked
    monkeypatch.setattr(stacked_training, "_train_stacked",
                        lambda cfgs, *a, **k: (stacked.append([c["run_id"] for c in cfgs]), real(cfgs, *a, **k)))
    monkeypatch.setattr(training, "train_run", lambda *a, **k: pytest.fail("a member continued alone"))
    assert main(["--preset", "tiny", "--seeds", "2", "--out", str(out), "--estimator", "binning", "--resume",
                 "--no-progress", "--quiet"]) == 0
    assert stacked == [killed]                                  # the BNN chunk was complete: not retrained
    for run_id in killed:
        assert open_store(out / "runs" / run_id).status == "complete"
        assert list(open_store(out / "runs" / run_id).epochs) == list(open_store(both["stacked"] / "runs" / run_id).epochs)
    aside = sorted(p.name.rsplit("-", 2)[0] for p in (out / "replaced").iterdir())
    assert aside == killed                                      # nothing recorded is lost
    assert all(len(open_store(p).epochs) == 2 for p in (out / "replaced").iterdir())


def test_resume_restarts_a_lone_member_without_checkpoint(both, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(both["stacked"], out)
    _interrupt(out / "runs" / "tishby-dnn-tanh-s1")   # the other seed of the chunk is complete: trained alone
    assert main(["--preset", "tiny", "--seeds", "2", "--out", str(out), "--estimator", "binning", "--resume",
                 "--no-progress", "--quiet"]) == 0
    store = open_store(out / "runs" / "tishby-dnn-tanh-s1")
    assert store.status == "complete" and not [e for e in store.events if e["kind"].startswith("retrained")]
    assert [p.name.rsplit("-", 2)[0] for p in (out / "replaced").iterdir()] == ["tishby-dnn-tanh-s1"]
