"""`python -m experiments.run` end to end on the `tiny` preset (in-process), plus argument errors.

Ground truth used: the 12-bit dataset has 4096 distinct inputs (log2 N = 12 bits) and H(Y) =
0.99916 bits; on ±1 codes the plug-in estimator of a third-party plugin, the built-in `exact`
and `binning` (30 bins on [-1, 1] put -1 and +1 in different bins) must give identical values.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
from experiments.run import main
from ibtoolkit.plane import BASE_COLUMNS, read_plane

PLUGIN = str(pathlib.Path(__file__).parent / "plugins" / "my_estimator_plugin.py")
RUNS = ("tishby-dnn-tanh-s0", "tishby-bnn-ste_sign-s0")
ESTIMATORS = ["--estimator", "exact", "--estimator", "binning", "--estimator", "naive_plugin"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "out"
    code = main(["--preset", "tiny", "--out", str(out), "--plugin", PLUGIN, *ESTIMATORS, "--no-progress"])
    return out, code


def test_tiny_run_writes_every_output(tiny_run):
    out, code = tiny_run
    assert code == 0
    for run in RUNS:
        manifest = json.loads((out / "runs" / run / "manifest.json").read_text())
        assert manifest["status"] == "complete"
    for name in ("information_plane.csv", "phases.csv", "report.md", "preset.json"):
        assert (out / name).is_file(), name
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    pdfs = sorted(p.stem for p in (out / "figures").glob("*.pdf"))
    assert pngs and pngs == pdfs
    assert any(s.startswith("plane-") for s in pngs) and any(s.startswith("mi-") for s in pngs)
    assert any(s.startswith("metrics-") for s in pngs) and any(s.startswith("grid-") for s in pngs)
    report = (out / "report.md").read_text()
    for section in ("## Runs", "## Phases", "## Checks", "## Figures"):
        assert section in report
    agreement = report.split("### Estimator agreement")[1].split("##")[0]
    assert "| estimator_a | estimator_b |" in agreement and "| estimator | n_points |" in agreement
    assert "Result(" not in report and "```" not in agreement  # tables, never a Python repr
    linked = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert linked and all((out / rel).is_file() for rel in linked)


def test_plane_csv_columns_and_ground_truth(tiny_run):
    out, _ = tiny_run
    df = read_plane(out / "information_plane.csv")
    for col in BASE_COLUMNS + ["loss", "accuracy", "val_loss", "val_accuracy", "status", "error"]:
        assert col in df.columns, col
    assert (df["status"] == "ok").all(), df.loc[df["status"] != "ok", "error"].tolist()
    # exact is discrete-only: dropped for the full-precision net; 2 hidden layers x epochs 0..4
    counts = df.groupby(["run", "estimator"]).size().to_dict()
    assert counts == {(RUNS[0], "binning"): 10, (RUNS[0], "naive_plugin"): 10,
                      (RUNS[1], "binning"): 10, (RUNS[1], "exact"): 10, (RUNS[1], "naive_plugin"): 10}
    assert sorted(df["epoch"].unique()) == [0, 1, 2, 3, 4]
    meta = df.drop_duplicates("run").set_index("run")
    assert meta.loc[RUNS[1], ["dataset", "model", "precision", "variant"]].tolist() == \
        ["tishby", "bnn-ste_sign", "binary", "ste_sign"]
    assert meta.loc[RUNS[0], ["model", "precision", "variant"]].tolist() == ["dnn-tanh", "full", "tanh"]
    assert (df["seed"] == 0).all()
    assert np.allclose(df["ixt_ceiling"], 12.0, atol=1e-12)
    assert np.allclose(df["h_y"], 0.99916, atol=5e-6)
    trained = df[df["epoch"] >= 1]
    assert trained[["loss", "accuracy", "val_loss", "val_accuracy"]].notna().all().all()
    assert trained["val_accuracy"].between(0, 1).all()

    bnn = df[df["run"] == RUNS[1]].pivot_table(index=["layer", "epoch"], columns="estimator",
                                                 values=["ixt", "ity"])
    for value in ("ixt", "ity"):  # the plugin, exact and binning agree on +-1 codes
        assert np.allclose(bnn[value]["naive_plugin"], bnn[value]["exact"], atol=1e-9)
        assert np.allclose(bnn[value]["binning"], bnn[value]["exact"], atol=1e-9)
    b = df[(df["run"] == RUNS[1]) & (df["estimator"] == "exact")]
    assert (b["ixt"] <= np.minimum(b["width"], 12) + 1e-9).all()
    assert (b["ity"] <= b["ixt"] + 1e-9).all() and (b["ity"] <= b["h_y"] + 1e-9).all()

    phases = pd.read_csv(out / "phases.csv")
    assert {"layer", "estimator"} <= set(phases.columns) and len(phases)


def test_resume_skips_training_and_estimation(tiny_run, capsys):
    out, _ = tiny_run
    manifests = {run: out / "runs" / run / "manifest.json" for run in RUNS}
    before = {run: (p.stat().st_mtime_ns, p.read_bytes()) for run, p in manifests.items()}
    csv_before = pd.read_csv(out / "information_plane.csv")
    capsys.readouterr()
    code = main(["--preset", "tiny", "--out", str(out), "--plugin", PLUGIN, *ESTIMATORS, "--resume",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    for run in RUNS:
        assert f"skip training {run}: store complete" in err
        assert f"skip estimation {run} / exact" in err or run == RUNS[0]
        assert (manifests[run].stat().st_mtime_ns, manifests[run].read_bytes()) == before[run]
    pd.testing.assert_frame_equal(pd.read_csv(out / "information_plane.csv"), csv_before)


def test_failing_estimator_finishes_the_rest_and_exits_nonzero(tiny_run, capsys):
    out, _ = tiny_run
    code = main(["--preset", "tiny", "--out", str(out), "--plugin", PLUGIN, "--estimator", "binning",
                 "--estimator", "always_fails", "--resume", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "failure(s)" in captured.err and "always_fails" in captured.err
    df = read_plane(out / "information_plane.csv")
    assert (df.loc[df["estimator"] == "binning", "status"] == "ok").all()
    assert (df.loc[df["estimator"] == "always_fails", "status"] == "failed").all()
    assert (df.loc[df["estimator"] == "always_fails", "error"].str.contains("always_fails was asked")).all()


def test_estimator_failing_on_one_layer_fails_only_those_rows(tiny_run, capsys):
    out, _ = tiny_run
    code = main(["--preset", "tiny", "--out", str(out), "--plugin", PLUGIN, "--estimator", "naive_plugin",
                 "--estimator", "fails_on_width_3", "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    df = read_plane(out / "information_plane.csv")
    ours = df[df["estimator"] == "fails_on_width_3"]
    failed, ok = ours[ours["status"] == "failed"], ours[ours["status"] == "ok"]
    assert set(failed["width"]) == {3} and set(ok["width"]) == {4}
    assert len(failed) == len(ok) == 2 * 5                                 # 2 runs x epochs 0..4 each
    assert failed["error"].str.contains("ArithmeticError: fails_on_width_3 cannot handle a layer of width 3").all()
    assert failed["ixt"].isna().all()
    ref = df[df["estimator"] == "naive_plugin"].set_index(["run", "layer", "epoch"])
    got = ok.set_index(["run", "layer", "epoch"])
    np.testing.assert_allclose(got["ixt"], ref.loc[got.index, "ixt"], atol=1e-12)
    for run in RUNS:                                                        # the summary, one line per run
        assert f"{run} / fails_on_width_3: 5 estimate(s) failed, e.g. ArithmeticError" in err


@pytest.mark.parametrize("args, message", [
    (["--estimator", "nope"], "unknown estimator(s) nope; available: "),
    (["--preset", "nope"], "unknown preset 'nope'; available: paper, paper-digits, paper-mnist, quick, study, "
                           "study-bnn, study-coarse, study-digits, study-fashion, study-matched, study-nulls, "
                           "study-positive, study-resolution, study-wide, tiny"),
    (["--dataset", "nope"], "unknown dataset(s) nope; available: digits, fashion_mnist, mnist, tishby"),
    (["--preset", "study", "--arm", "nope"], "--arm: preset 'study' has no model 'nope'; its models: dnn-tanh, "
                                             "dnn-relu, dnn-tanh-lr0"),
    (["--estimator", "exact", "--estimator", "kdee"], "unknown estimator(s) kdee; available: "),
    (["--epochs", "-3"], "--epochs must be a positive number of training epochs, got -3"),
    (["--epochs", "0"], "--epochs must be a positive number of training epochs, got 0"),
    (["--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    (["--seeds", "x"], "--seeds takes a positive count N"),
    (["--seeds", "0"], "--seeds takes a positive count N (seeds 0..N-1) or a comma list"),
    (["--seeds", "-2"], "--seeds takes a positive count N (seeds 0..N-1) or a comma list"),
    (["--seeds", "1,1"], "--seeds takes distinct non-negative integers, got '1,1'"),
    (["--seeds", "3,-1"], "--seeds takes distinct non-negative integers, got '3,-1'"),
    (["--jobs", "0"], "--jobs must be a positive number of workers or -1"),
    (["--jobs", "-2"], "--jobs must be a positive number of workers or -1 (all cores), got -2"),
    (["--plugin", "no_such_module_xyz"], "--plugin no_such_module_xyz: could not import it"),
    (["--estimator", "kde(noise_variance=1e-3"], "unbalanced parentheses"),
    (["--estimator", "kde(bandwidth=2)"], "estimator 'kde' got unknown parameter(s) ['bandwidth']"),
])
def test_bad_arguments_exit_2_with_a_useful_message(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "tiny", "--out", str(tmp_path / "o"), *args] if "--preset" not in args
             else ["--out", str(tmp_path / "o"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]          # one line says what is wrong and what to do
    if args[0] == "--estimator":
        assert "exact" in err and "kde" in err


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "tiny", "--out", str(blocker / "sub")])
    assert exc.value.code == 2
    assert "is not writable" in capsys.readouterr().err


def test_out_on_a_pseudo_file_system_names_the_directory_that_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "tiny", "--out", "/proc/foo"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--out /proc/foo is not writable (cannot create directories in /proc" in err


def test_list_estimators_in_a_real_subprocess():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--list-estimators", "--plugin", PLUGIN],
                          capture_output=True, text=True, env=env, timeout=120,
                          cwd=pathlib.Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert {"exact", "binning", "kde", "ksg", "naive_plugin"} <= set(names)


def test_completed_store_is_reused_only_for_the_same_training_settings(tiny_run):
    from experiments import presets
    from experiments.training import expand_runs, run_directory, store_is_complete

    out, _ = tiny_run
    cfg = expand_runs(presets.get_preset("tiny"))[1]
    assert cfg["run_id"] == RUNS[1]
    assert store_is_complete(run_directory(out, cfg), cfg)
    longer = {**cfg, "model": {**cfg["model"], "epochs": 5}}
    other_seed = {**cfg, "seed": 1}
    assert not store_is_complete(run_directory(out, cfg), longer)
    assert not store_is_complete(run_directory(out, cfg), other_seed)
    # changing only the estimators does not invalidate the training
    assert store_is_complete(run_directory(out, cfg), {**cfg, "model": {**cfg["model"], "estimators": []}})


def test_prepare_data_maps_bnn_inputs_to_pm1_and_keeps_the_analysis_set_in_order():
    from experiments import presets
    from experiments.datasets import tishby_dataset
    from experiments.training import expand_runs, prepare_data

    dnn_cfg, bnn_cfg = expand_runs(presets.get_preset("tiny"))
    x, y = tishby_dataset()
    bnn, dnn = prepare_data(bnn_cfg), prepare_data(dnn_cfg)
    assert (len(bnn["y_train"]), len(bnn["y_test"])) == (3277, 819)       # 80/20 of 4096
    assert set(np.unique(bnn["x_train"])) == {-1.0, 1.0}
    assert set(np.unique(dnn["x_train"])) == {0.0, 1.0}
    np.testing.assert_array_equal(bnn["x_analysis"], 2.0 * x - 1.0)        # all 4096, counting order
    np.testing.assert_array_equal(dnn["x_analysis"], x)
    np.testing.assert_array_equal(bnn["y_analysis"], y)
    assert int(bnn["y_analysis"].sum()) == 2118
    np.testing.assert_array_equal(bnn["y_test"], dnn["y_test"])           # one split for every model


def test_plugin_that_raises_on_import_exits_2_naming_it(tmp_path, capsys):
    plugin = tmp_path / "h7_exploding_plugin.py"
    plugin.write_text("raise RuntimeError('the plugin needs a licence server')\n")
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "tiny", "--out", str(tmp_path / "o"), "--plugin", str(plugin)])
    assert exc.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert f"--plugin {plugin}: could not import it (RuntimeError: the plugin needs a licence server)" in errors[0]
    assert "give an importable module name or the path of a .py file" in errors[0]
    from ibtoolkit import available_estimators

    assert {"exact", "binning", "kde", "ksg"} <= set(available_estimators())   # built-ins unaffected


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No MNIST anywhere: empty HOME (Keras cache), empty $IBTOOLKIT_DATA, a download that fails like
    an unreachable network (never the real one), and a training step that must not be reached."""
    from experiments import datasets, training

    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IBTOOLKIT_DATA", str(data))
    monkeypatch.setattr(datasets, "_DEBIAN_FASHION_DIR", str(tmp_path / "debian"))
    calls = {"download": [], "train": []}

    def unreachable(name, parts):
        calls["download"].append(name)
        raise OSError("[Errno 101] Network is unreachable")

    def no_training(cfg, *args, **kwargs):
        calls["train"].append(cfg["run_id"])
        raise AssertionError("training started although a dataset is missing")

    monkeypatch.setattr(datasets, "_download", unreachable)
    monkeypatch.setattr(training, "train_run", no_training)
    return calls


@pytest.mark.parametrize("datasets_args", [["--dataset", "mnist"],
                                           ["--dataset", "tishby", "--dataset", "fashion_mnist"]])
def test_missing_dataset_offline_exits_2_before_any_training(offline, tmp_path, capsys, datasets_args):
    missing = datasets_args[-1]
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "tiny", "--out", str(tmp_path / "o"), *datasets_args, "--no-progress"])
    assert exc.value.code == 2
    assert offline == {"download": [missing], "train": []}
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert f"dataset {missing}: {missing} was not found locally and the Keras download failed" in errors[0]
    assert "Network is unreachable" in errors[0] and "into $IBTOOLKIT_DATA" in errors[0]


def test_resume_with_complete_stores_does_not_need_the_dataset(tiny_run, monkeypatch, capsys):
    """--resume on finished runs must not refuse to start because the raw dataset went missing."""
    from experiments import datasets

    out, _ = tiny_run
    monkeypatch.setattr(datasets, "ensure_available", lambda name, **kw: pytest.fail(f"{name} checked"))
    assert main(["--preset", "tiny", "--out", str(out), "--estimator", "binning", "--resume", "--no-progress",
                 "--quiet"]) == 0


def test_disk_full_while_writing_outputs_exits_1_keeping_the_stores(tiny_run, tmp_path, monkeypatch, capsys):
    """ENOSPC after estimation (tables, figures, report): one error line, exit 1, every store and
    estimate kept, and --resume after freeing space completes the outputs."""
    import errno
    import shutil

    from experiments import report

    src, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    (out / "report.md").unlink()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_report", full)
    code = main(["--preset", "tiny", "--out", str(out), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    for run in RUNS:
        assert json.loads((out / "runs" / run / "manifest.json").read_text())["status"] == "complete"
    monkeypatch.undo()
    assert main(["--preset", "tiny", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert (out / "report.md").is_file()


# -- estimator parameters on the command line ----------------------------------------------------
def test_cli_parameters_are_merged_over_the_presets_spec():
    from experiments import presets
    from experiments.run import resolve_estimators

    dnn = next(m for m in presets.get_preset("tiny")["models"] if m["precision"] == "full")
    preset_binning = next(s for s in dnn["estimators"] if s["name"] == "binning")
    specs = resolve_estimators(["binning(n_bins=10)", "binning", "kde(noise_variance=1e-3)",
                                "binning(n_bins=10)"], dnn)
    assert specs[0] == {**preset_binning, "n_bins": 10}       # merged over the preset's spec, not in place of it
    assert specs[1] == preset_binning
    assert specs[2]["noise_variance"] == 0.001 and len(specs) == 3  # the repeated set kept once


def test_two_parameter_sets_of_one_estimator_are_told_apart_everywhere(tiny_run, capsys):
    src, _ = tiny_run
    import shutil

    out = src.parent / "two-sets"
    shutil.copytree(src, out)
    code = main(["--preset", "tiny", "--out", str(out), "--estimator", "binning(n_bins=10)",
                 "--estimator", "binning(n_bins=30, value_range=[-1.0, 1.0])", "--resume", "--no-progress",
                 "--quiet"])
    assert code == 0
    df = read_plane(out / "information_plane.csv")
    assert set(df["estimator"]) == {"binning(n_bins=10)", "binning(n_bins=30)"}
    assert df.groupby("estimator")["estimator_label"].nunique().eq(1).all()
    phases = pd.read_csv(out / "phases.csv")
    assert set(phases["estimator"]) == {"binning(n_bins=10)", "binning(n_bins=30)"}
    # the two sets differ on ±1 codes only through the bin count: with 10 bins on [-1, 1] -1 and +1 still
    # fall in different bins, so both equal exact there; on the tanh net they differ
    dnn = df[df["run"] == RUNS[0]].pivot_table(index=["layer", "epoch"], columns="estimator", values="ixt")
    assert (dnn["binning(n_bins=10)"] <= dnn["binning(n_bins=30)"] + 1e-9).mean() > 0.5
    figures = sorted(p.name for p in (out / "figures").glob("plane-*.png"))
    assert any("n_bins_10" in f for f in figures) and any("n_bins_30" in f for f in figures)
    # the label printed in the table parses back as an --estimator
    from experiments.run import parse_cli_estimators

    assert parse_cli_estimators(["binning(n_bins=10)"]) == [{"name": "binning", "n_bins": 10}]


# -- --resume continues a killed training run ----------------------------------------------------
def test_resume_continues_a_killed_run_from_its_checkpoint_like_an_uninterrupted_run(tmp_path):
    """Killed (SIGKILL) right after epoch 14 with its checkpoint at epoch 9: --resume restores weights,
    optimizer state and epoch from the checkpoint, trains epochs 10..14 again (recorded as such, not
    twice), records 15..20, and ends where an uninterrupted run ends: the same weights."""
    from experiments import presets
    from experiments.training import expand_runs, train_run
    from ibtoolkit import open_store

    preset = presets.get_preset("tiny")
    preset["models"] = [m for m in preset["models"] if m["precision"] == "binary"]
    preset["models"][0]["epochs"] = 20
    (cfg,) = expand_runs(preset)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pathlib.Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    child = pathlib.Path(__file__).parent / "_resume_child.py"
    proc = subprocess.run([sys.executable, str(child), str(tmp_path / "killed"), json.dumps(cfg), "9", "14"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    directory = tmp_path / "killed" / "runs" / cfg["run_id"]
    killed = open_store(directory)
    assert killed.status == "interrupted" and killed.epochs.tolist() == list(range(15))
    assert json.loads((tmp_path / "killed" / "checkpoints" / cfg["run_id"] / "state.json").read_text())["epoch"] == 9

    with pytest.warns(RuntimeWarning, match="epochs 10..14 are trained again"):
        train_run(cfg, tmp_path / "killed", resume=True)
    resumed = open_store(directory)
    assert resumed.status == "complete" and resumed.epochs.tolist() == list(range(21))  # no gap, no repeat
    retrained = [e for e in resumed.events if e["kind"] == "retrained"]
    assert len(retrained) == 1 and retrained[0]["epoch"] == 9 and "epochs 10..14 are trained again" in \
        retrained[0]["message"]
    check = next(e for e in resumed.events if e["kind"] == "retrained_check")
    assert "reproduced the recorded weights of epoch 14 exactly" in check["message"]

    reference = open_store(train_run(cfg, tmp_path / "straight", resume=False))
    assert reference.weight_states[20] == resumed.weight_states[20]  # bitwise the same final weights
    for layer in reference.layers:
        np.testing.assert_array_equal(resumed.read(layer), reference.read(layer))


def test_arm_keeps_only_the_named_models_of_the_preset(tmp_path):
    from experiments.run import _configure, build_parser

    parser = build_parser()
    args = parser.parse_args(["--preset", "study", "--arm", "dnn-tanh-8bit", "--arm", "bnn-ste_sign-bn",
                              "--dataset", "tishby", "--out", str(tmp_path / "o")])
    preset, _ = _configure(args, parser)
    assert sorted({(m["name"], m["datasets"][0]) for m in preset["models"]}) == [
        ("bnn-ste_sign-bn", "digits"), ("bnn-ste_sign-bn", "fashion_mnist"), ("bnn-ste_sign-bn", "tishby"),
        ("dnn-tanh-8bit", "digits"), ("dnn-tanh-8bit", "fashion_mnist"), ("dnn-tanh-8bit", "tishby")]
    assert preset["datasets"] == ["tishby"]          # expand_runs then trains the two 12-bit arms only
