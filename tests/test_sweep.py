"""The sweep engine (experiments.sweep) and the CLI's --jobs / --scheduler / --subsample.

Ground truth: a grid gives the same information-plane table whichever engine ran it, because every
training task sets its seeds and clears the Keras session inside and every estimation task only
reads its store.  The `tiny` grid with two seeds is run serially, on two loky workers and on a Dask
LocalCluster of two worker processes, and the tables are compared value by value (tolerance 1e-9
bits; measured difference: 0).  The 12-bit data have log2 N = 12 bits and H(Y) = 0.99916 bits.
"""
import os
import sys

import numpy as np
import pandas as pd
import pytest

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
from experiments import sweep
from experiments.presets import get_preset
from experiments.run import _estimate_cache_path, _estimate_one, main, run_experiment
from ibtoolkit.plane import read_plane

KEYS = ["run", "estimator", "layer", "epoch"]


def _square(x):
    return x * x


def _fail_on_three(x):
    if x == 3:
        raise ValueError("three is bad")
    return x + 100


def _pid(_):
    return os.getpid()


def _die(x):
    if x == 1:
        os._exit(3)  # a worker killed mid-task (e.g. by the out-of-memory killer)
    return x


# -- the engine alone (no TensorFlow in the workers: fast) -----------------------------------------
def test_engine_returns_outcomes_in_task_order_and_reports_failures_without_stopping():
    tasks = [sweep.Task("t", f"k{i}", _fail_on_three, (i,)) for i in range(6)]
    with sweep.Engine(jobs=2) as engine, sweep.Progress(len(tasks), enabled=False) as bar:
        outcomes = engine.map(tasks, bar)
    assert [o.key for o in outcomes] == [f"k{i}" for i in range(6)]
    assert [o.value for o in outcomes if o.ok] == [100, 101, 102, 104, 105]
    bad = [o for o in outcomes if not o.ok]
    assert len(bad) == 1 and bad[0].key == "k3" and "ValueError: three is bad" in bad[0].error
    assert (bar.finished, bar.failed) == (5, 1)
    assert outcomes[0].pid != os.getpid()  # ran in a worker process


def test_a_dead_worker_fails_the_unfinished_tasks_instead_of_crashing_the_grid():
    tasks = [sweep.Task("t", f"k{i}", _die, (i,)) for i in range(3)]
    with sweep.Engine(jobs=2) as engine, sweep.Progress(len(tasks), enabled=False) as bar:
        outcomes = engine.map(tasks, bar)
    assert [o.key for o in outcomes] == ["k0", "k1", "k2"]
    assert not outcomes[1].ok and "worker pool failed" in outcomes[1].error
    assert bar.finished + bar.failed == 3 and bar.failed >= 1


def test_serial_engine_and_local_stage_run_in_this_process():
    tasks = [sweep.Task("t", str(i), _pid, (i,)) for i in range(3)]
    with sweep.Engine(jobs=1) as engine:
        assert engine.mode == "serial" and engine.inner_jobs == 1
        assert {o.value for o in engine.map(tasks)} == {os.getpid()}
    with sweep.Engine(jobs=2) as engine:
        assert engine.mode == "joblib" and engine.inner_jobs == 2
        assert {o.value for o in engine.map(tasks, local=True)} == {os.getpid()}


def test_progress_counts_and_drop():
    bar = sweep.Progress(5, enabled=False)
    bar.done(sweep.Outcome("t", "a", value=1))
    bar.done(sweep.Outcome("t", "b", error="boom"))
    bar.drop(2)
    assert (bar.finished, bar.failed, bar.bar.total) == (1, 1, 3)
    bar.close()


@pytest.mark.parametrize("jobs", [0, -2, True, 1.5])
def test_engine_rejects_bad_jobs(jobs):
    with pytest.raises(ValueError, match="jobs must be"):
        sweep.Engine(jobs=jobs)


def test_scheduler_validation():
    sweep.check_scheduler(None)
    sweep.check_scheduler("local")
    sweep.check_scheduler("tcp://10.0.0.1:8786")
    for bad in ("10.0.0.1", "http//x", "tcp://"):
        with pytest.raises(sweep.SchedulerError, match="--scheduler takes 'local'"):
            sweep.check_scheduler(bad)


def test_missing_dask_is_exit_2_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(SystemExit) as info:
        main(["--preset", "tiny", "--out", str(tmp_path / "o"), "--scheduler", "local", "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[distributed]"' in err and "not installed" in err


def test_unreachable_scheduler_is_exit_2(monkeypatch, tmp_path, capsys):
    pytest.importorskip("distributed")
    import ibtoolkit.parallel

    monkeypatch.setattr(ibtoolkit.parallel, "CONNECT_TIMEOUT", 1.0)  # the engine's default, read when it starts
    with pytest.raises(SystemExit) as info:
        main(["--preset", "tiny", "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9",
              "--no-progress", "--quiet"])
    assert info.value.code == 2
    assert "could not connect to the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()  # nothing trained


@pytest.mark.parametrize("args, message", [
    (["--subsample", "0"], "--subsample must be a positive"),
    (["--subsample", "10", "--subsample-seed", "-1"], "--subsample-seed must be"),
    (["--scheduler", "nowhere"], "--scheduler takes 'local'"),
])
def test_bad_sweep_arguments_exit_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--preset", "tiny", "--out", str(tmp_path / "o"), "--no-progress", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


# -- a real grid, three ways -----------------------------------------------------------------------
def _grid():
    preset = get_preset("tiny")
    preset["seeds"] = [0, 1]
    return preset


@pytest.fixture(scope="module")
def three_ways(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    preset = _grid()
    # figures only once (they come from the table, which is compared): the parallel runs skip them
    out = {"serial": run_experiment(preset, root / "serial", progress=False),
           "joblib": run_experiment(preset, root / "joblib", jobs=2, progress=False, figures=False)}
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        out["dask"] = run_experiment(preset, root / "dask", scheduler=client, progress=False, figures=False)
    return out


def test_grid_identical_serial_joblib_dask(three_ways):
    tables = {}
    for name, result in three_ways.items():
        assert result["failures"] == [], (name, result["failures"])
        df = read_plane(result["out"] / "information_plane.csv")
        tables[name] = df.sort_values(KEYS, kind="stable").reset_index(drop=True)
    ref = tables["serial"]
    # 2 models x 2 seeds, one estimator each (exact for the BNN, binning for the DNN), 2 layers, epochs 0..4
    assert len(ref) == 2 * 2 * 2 * 5 and ref["run"].nunique() == 4
    assert set(ref["seed"]) == {0, 1} and (ref["status"] == "ok").all()
    np.testing.assert_allclose(ref["ixt_ceiling"], 12.0)
    np.testing.assert_allclose(ref["h_y"], 0.99916, atol=1e-5)
    # epoch 0 differs between seeds (different initial weights): the seeds are really different runs
    e0 = ref[(ref.epoch == 0) & (ref.layer == ref.layer.iloc[0])].groupby("model")["ixt"].nunique()
    assert (e0 == 2).all()
    for name in ("joblib", "dask"):
        df = tables[name]
        pd.testing.assert_frame_equal(df[KEYS], ref[KEYS])
        for col in ("ixt", "ity", "loss", "val_accuracy"):
            np.testing.assert_allclose(df[col].to_numpy(float), ref[col].to_numpy(float), rtol=0, atol=1e-9,
                                       err_msg=f"{name} {col}")
    assert three_ways["joblib"]["engine"].startswith("joblib/loky, 2 workers")
    assert three_ways["dask"]["engine"].startswith("dask")


def test_estimation_time_is_broken_down_by_model_and_estimator(three_ways):
    for name, result in three_ways.items():
        spent = result["estimation_seconds"]
        # tiny: dnn-tanh with binning, bnn-ste_sign with exact; two seeds (two stores) each
        assert spent["model"].tolist() == ["dnn-tanh", "bnn-ste_sign"] and spent["stores"].tolist() == [2, 2], name
        assert [label.split("(")[0] for label in spent["estimator"]] == ["binning", "exact"], name
        assert (spent["seconds"] > 0).all()
    report = (three_ways["serial"]["out"] / "report.md").read_text()
    assert "Estimation by model and estimator" in report and "| bnn-ste_sign | exact(" in report


def test_parallel_grid_resumes_without_recomputing(three_ways, tmp_path):
    out = three_ways["joblib"]["out"]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "estimates").rglob("*.csv")}
    manifests = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/manifest.json")}
    again = run_experiment(_grid(), out, jobs=2, resume=True, progress=False, figures=False)
    assert again["failures"] == []
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert {p: p.stat().st_mtime_ns for p in manifests} == manifests


def test_subsample_is_seeded_stated_in_rows_and_cached_apart(three_ways):
    out = three_ways["joblib"]["out"]
    result = run_experiment(_grid(), out, resume=True, subsample=1000, random_state=7, progress=False,
                            figures=False)
    df = result["plane"]
    assert result["failures"] == [] and len(df) == 40
    assert (df["subsample"] == 1000).all() and (df["random_state"] == 7).all() and (df["n_samples"] == 1000).all()
    np.testing.assert_allclose(df["ixt_ceiling"], np.log2(1000))  # 1000 distinct 12-bit patterns
    assert (df["ixt"] <= np.log2(1000) + 1e-9).all()
    full_rows = read_plane(out / "estimates" / "tishby-bnn-ste_sign-s0" / _estimate_cache_path(
        out, "tishby-bnn-ste_sign-s0", {"name": "exact"}).name)
    assert full_rows["subsample"].isna().all() and (full_rows["n_samples"] == 4096).all()
    store = three_ways["joblib"]["stores"]["tishby-bnn-ste_sign-s0"]
    cached = _estimate_cache_path(out, "tishby-bnn-ste_sign-s0", {"name": "exact"}, 1000, 7)
    stamp = cached.stat().st_mtime_ns
    again = _estimate_one(store, {"name": "exact"}, out, resume=True, subsample=1000, random_state=7)
    assert cached.stat().st_mtime_ns == stamp  # read from the cache
    mine = df[df["run"] == "tishby-bnn-ste_sign-s0"].reset_index(drop=True)
    np.testing.assert_array_equal(again["ixt"].to_numpy(), mine["ixt"].to_numpy())
    other = _estimate_one(store, {"name": "exact"}, out, resume=True, subsample=1000, random_state=8)
    assert not np.array_equal(other["ixt"].to_numpy(), mine["ixt"].to_numpy())  # another subset


def test_seed_averaged_figures_and_phase_table_use_every_seed(three_ways):
    result = three_ways["serial"]
    out = result["out"]
    report = (out / "report.md").read_text()
    captions = [line for line in report.splitlines() if line.startswith("**")]
    planes = [c for c in captions if "information plane" in c]
    assert len(planes) == 2 and all("median and interquartile band over 2 seeds" in c for c in planes)
    assert sum("MI vs epoch" in c and "over 2 seeds" in c for c in captions) == 2
    metrics = sorted(p.stem for p in (out / "figures").glob("metrics-*.png"))
    assert metrics == ["metrics-tishby-bnn-ste_sign", "metrics-tishby-dnn-tanh"]  # one per model, not per seed
    phases = result["phases"]
    assert len(phases) == 2 * 2 and (phases["n_seeds"] == 2).all()  # 2 models x 2 layers, both seeds each
    assert set(phases["seeds"]) == {"0,1"}
