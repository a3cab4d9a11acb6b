"""``python -m experiments.run``: train, estimate, analyse and report one preset end to end.

Pipeline: one training run per (dataset, model, seed) into an activation store
(:func:`experiments.training.train_run`; by default the seeds of a (dataset, model) are trained
stacked in one model, :mod:`experiments.stacked_training`, ``--no-stack`` one by one), then the
information plane of every store under every
estimator (:func:`ibtoolkit.information_plane`), both as the tasks of a sweep (:mod:`experiments.sweep`:
serial, ``--jobs N`` loky workers, or Dask with ``--scheduler``; a single store is estimated in parallel
over layer x epoch instead), then the phase analysis (:mod:`ibtoolkit.phases`), figures (:mod:`ibtoolkit.plotting`) and ``report.md``
(:mod:`experiments.report`).  Outputs in ``--out`` (default ``results/<preset>``)::

    runs/<run_id>/            one activation store per run
    estimates/<run_id>/*.csv  the plane of one (run, estimator, parameters[, subsample]): the --resume cache
    information_plane.csv     every row of every run and estimator (the shared tidy table)
    phases.csv                phase table (verdict per run x layer x estimator)
    figures/*.png|pdf         information planes, MI vs epoch, accuracy, estimator grid, overlap
    report.md                 links the figures, summarises the runs, the verdicts and checks

Exit status: 0 on success, 1 when some training run or estimate failed (the rest is still
computed and a summary printed), 2 on bad arguments (including a --scheduler that cannot be used:
Dask not installed, a malformed address, an unreachable scheduler).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import pathlib
import sys
import tempfile
import time

from experiments import presets as _presets
from experiments import sweep

from experiments.estimator_specs import (distinguish_parameter_sets, parse_cli_estimators,
                                         resolve_estimators, spec_label)

__all__ = ["main", "build_parser", "run_experiment", "load_plugin", "resolve_estimators", "parse_cli_estimators",
           "distinguish_parameter_sets"]

log = logging.getLogger("experiments.run")


# -- argument parsing ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description="Train DNNs and BNNs, record their activations, estimate the information plane with "
                    "every chosen estimator, detect fitting/compression phases and write a report.")
    p.add_argument("--preset", default=_presets.DEFAULT_PRESET,
                   help=f"experiment preset (default {_presets.DEFAULT_PRESET}); see --list-presets")
    p.add_argument("--estimator", action="append", metavar="SPEC",
                   help="estimator to run (repeatable), or 'all': a name ('kde'), a name with parameters "
                        "('kde(noise_variance=1e-3)', the label --list-estimators and the CSV print), "
                        "'binning:n_bins=10' or a JSON object; parameters are merged over the preset's spec "
                        "for each model; default: the preset's estimators per model")
    p.add_argument("--dataset", action="append", metavar="NAME",
                   help="dataset(s) instead of the preset's (repeatable)")
    p.add_argument("--arm", action="append", metavar="MODEL",
                   help="train and estimate only the preset's model(s) of this name (repeatable), e.g. "
                        "--preset study --arm dnn-tanh-8bit (an unknown name lists the preset's models)")
    p.add_argument("--epochs", type=int, help="training epochs of every model (overrides the preset)")
    p.add_argument("--seeds", help="number of seeds N (seeds 0..N-1) or a comma list such as 3,5,7")
    p.add_argument("--out", help="output directory (default results/<preset>)")
    p.add_argument("--plugin", action="append", metavar="MODULE", default=[],
                   help="module name or .py file that registers a custom estimator (repeatable)")
    p.add_argument("--list-estimators", action="store_true", help="list the registered estimators and exit")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--resume", action="store_true",
                   help="skip runs whose store is complete and estimates already computed; continue a killed "
                        "run from its checkpoint (weights, optimizer state, epoch; see experiments.resume), "
                        "never deleting a store")
    p.add_argument("--jobs", type=int, default=1,
                   help="parallel workers (-1: all cores): training runs and estimation jobs run on a joblib "
                        "process pool (one TensorFlow thread each); a single store is estimated in parallel "
                        "over layer x epoch instead; with --scheduler local, the number of Dask workers")
    p.add_argument("--scheduler", metavar="local|ADDRESS",
                   help="run the grid on Dask: 'local' starts a LocalCluster, an address such as "
                        "tcp://host:8786 connects to a running scheduler (workers must share --out); "
                        'needs the distributed extra: pip install -e ".[distributed]"')
    p.add_argument("--subsample", type=int, metavar="N",
                   help="estimate on a seeded random subset of N analysis samples (the same for every layer, "
                        "epoch and estimator; stated in the result rows): trades accuracy for time, e.g. "
                        "kde/ksg on a 10 000-sample analysis set")
    p.add_argument("--subsample-seed", type=int, default=0, metavar="S",
                   help="seed of the --subsample subset (default 0)")
    p.add_argument("--no-stack", action="store_true",
                   help="train the seeds of each (dataset, model) one by one instead of stacked in one model "
                        "(default: stacked in chunks of up to 20 seeds, one sweep task each; docs/stacking.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p


def _parse_seeds(text: str) -> list[int]:
    text = text.strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            return list(range(n))
    except ValueError:
        raise ValueError(f"--seeds takes a positive count N (seeds 0..N-1) or a comma list of "
                         f"non-negative integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds takes distinct non-negative integers, got {text!r}")
    return seeds


def load_plugin(spec: str):
    """Import an estimator plugin given as a module name or a path to a ``.py`` file.

    A ``.py`` file is imported as the module named after its stem, with its directory put on
    ``sys.path`` and ``PYTHONPATH``, so parallel estimation workers (``--jobs``) can import it by
    name too.  Importing the same file again is a no-op (its estimators are not registered twice).
    """
    path = pathlib.Path(spec)
    if not (spec.endswith(".py") or path.is_file()):
        return importlib.import_module(spec)
    if not path.is_file():
        raise ValueError(f"plugin file {spec} does not exist")
    path = path.resolve()
    name = path.stem
    if not name.isidentifier():
        raise ValueError(f"plugin file name {path.name!r} is not a valid module name")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if pathlib.Path(getattr(loaded, "__file__", "") or "").resolve() == path:
            return loaded
        raise ValueError(f"a different module named {name!r} is already imported "
                         f"({getattr(loaded, '__file__', None)}); rename the plugin file")
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if directory not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([directory] + [p for p in paths if p])
    return importlib.import_module(name)


def _check_writable(out: pathlib.Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-") as probe:
            probe.write(b"\0" * (1 << 20))  # a full disk still lets one create an empty file
            probe.flush()
    except OSError as exc:
        raise ValueError(f"--out {out} is not writable ({_why_not_writable(out, exc)}); choose a writable "
                         f"directory with --out") from None


def _why_not_writable(out: pathlib.Path, exc: OSError) -> str:
    """Say which directory refused: mkdir on a pseudo file system such as /proc fails with ENOENT
    ("No such file or directory") although the parent exists."""
    parent = next((p for p in [out, *out.absolute().parents] if p.exists()), None)
    if parent is None or parent == out:
        return exc.strerror or str(exc)
    if not parent.is_dir():
        return f"{parent} is a file, not a directory"
    return (f"cannot create directories in {parent}: {exc.strerror or exc}; it is not a writable directory "
            f"on a regular file system")


def _configure(args, parser) -> tuple[dict, pathlib.Path]:
    """Validate the arguments and return the effective preset and output directory (exit 2 on error)."""
    from ibtoolkit import available_estimators, get_estimator

    try:
        preset = _presets.get_preset(args.preset)
    except ValueError as exc:
        parser.error(str(exc))
    if args.estimator:
        try:
            for spec in parse_cli_estimators(args.estimator):
                get_estimator(spec)  # parameters the estimator does not take: refused before training
        except ValueError as exc:
            parser.error(str(exc) if str(exc).startswith("unknown estimator") else
                         f"--estimator: {exc} (available: {', '.join(available_estimators())})")
    if args.dataset:
        from experiments import datasets

        known = datasets.available_datasets()
        bad = [d for d in args.dataset if d not in known]
        if bad:
            parser.error(f"unknown dataset(s) {', '.join(bad)}; available: {', '.join(known)}")
        preset["datasets"] = list(dict.fromkeys(args.dataset))
    if args.arm:
        known = [m["name"] for m in preset["models"]]
        bad = [a for a in args.arm if a not in known]
        if bad:
            parser.error(f"--arm: preset {preset['name']!r} has no model {', '.join(map(repr, bad))}; its models: "
                         f"{', '.join(dict.fromkeys(known))}")
        preset["models"] = [m for m in preset["models"] if m["name"] in args.arm]
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error(f"--epochs must be a positive number of training epochs, got {args.epochs}")
        for model in preset["models"]:
            model["epochs"] = args.epochs
    if args.seeds is not None:
        try:
            preset["seeds"] = _parse_seeds(args.seeds)
        except ValueError as exc:
            parser.error(str(exc))
    if args.jobs == 0 or args.jobs < -1:
        parser.error(f"--jobs must be a positive number of workers or -1 (all cores), got {args.jobs}")
    if args.scheduler is not None:
        try:
            sweep.check_scheduler(args.scheduler)
        except ValueError as exc:
            parser.error(str(exc))
    if args.subsample is not None and args.subsample < 1:
        parser.error(f"--subsample must be a positive number of analysis samples, got {args.subsample}")
    if args.subsample_seed < 0:
        parser.error(f"--subsample-seed must be a non-negative integer, got {args.subsample_seed}")
    out = pathlib.Path(args.out if args.out else os.path.join("results", preset["name"]))
    try:
        _check_writable(out)
    except ValueError as exc:
        parser.error(str(exc))
    _check_datasets(preset, out, args.resume, parser)
    return preset, out


def _check_datasets(preset: dict, out: pathlib.Path, resume: bool, parser) -> None:
    """Every dataset still to train on must be loadable before any training starts (exit 2 if not).

    With ``--resume``, datasets whose runs all have complete stores are not needed (the analysis
    set is in the store) and are not checked.
    """
    from experiments import datasets

    needed = list(preset["datasets"])
    if resume:
        from experiments.training import expand_runs, run_directory, store_is_complete

        needed = list(dict.fromkeys(cfg["dataset"] for cfg in expand_runs(preset)
                                    if not store_is_complete(run_directory(out, cfg), cfg)))
    for name in needed:
        try:
            source = datasets.ensure_available(name, **preset.get("dataset_options", {}).get(name, {}))
        except ValueError as exc:
            parser.error(f"dataset {name}: " + " ".join(str(exc).split()))
        log.info("dataset %s: %s", name, source)


# -- estimation with a per-(run, estimator) cache ------------------------------------------------
def _estimate_cache_path(out: pathlib.Path, run_id: str, spec: dict, subsample=None,
                         random_state: int = 0) -> pathlib.Path:
    key = spec if subsample is None else {"spec": spec, "subsample": int(subsample),
                                          "random_state": int(random_state)}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return pathlib.Path(out) / "estimates" / run_id / f"{spec['name']}-{digest}.csv"


def _estimate_one(store_dir, spec, out, *, resume, jobs=1, progress=False, subsample=None,
                  random_state=0, plugins=()):
    """The plane of one store under one estimator spec, through the per-(run, estimator) CSV cache.

    A sweep task (:mod:`experiments.sweep`): runs in a worker or in this process, imports the
    ``plugins`` first (a worker may not have them yet) and raises on failure.
    """
    for plugin in plugins:
        load_plugin(plugin)
    from ibtoolkit import information_plane, open_store
    from ibtoolkit.plane import read_plane, write_plane

    store = open_store(store_dir)
    token = store.fingerprint
    path = _estimate_cache_path(pathlib.Path(out), store.directory.name, spec, subsample, random_state)
    token_file = path.with_suffix(".token")
    if resume and path.is_file() and token_file.is_file() and token_file.read_text() == token:
        log.info("skip estimation %s / %s: already computed", store.directory.name, spec["name"])
        return read_plane(path)
    df = information_plane(store, [spec], n_jobs=jobs, progress=progress, subsample=subsample,
                           random_state=random_state)
    write_plane(df, path)
    token_file.write_text(token)
    return df


def _train_group(cfgs, out, resume, threads):
    """A sweep task: train one run, or the seeds of a (dataset, model) stacked (seeds set and the Keras
    session cleared inside) -> their store paths."""
    from experiments.stacked_training import train_group

    return train_group(cfgs, out, resume=resume, threads=threads)


# -- the whole experiment ------------------------------------------------------------------------
def run_experiment(preset: dict, out, *, estimators=None, jobs: int = 1, resume: bool = False,
                   progress: bool = True, scheduler=None, subsample: int | None = None,
                   random_state: int = 0, plugins=(), figures: bool = True, stack: bool = True) -> dict:
    """Run a preset end to end into ``out``; returns a summary dict.

    Training runs and estimation jobs are the tasks of a sweep (:mod:`experiments.sweep`): serial
    with ``jobs=1``, on ``jobs`` local loky workers, or on Dask with ``scheduler`` ("local", an
    address such as "tcp://host:8786", or a ``distributed.Client``).  ``subsample``/``random_state``:
    estimate on a seeded subset of the analysis set (stated in the rows).  ``plugins``: estimator
    plugin modules or ``.py`` paths the workers import.  ``figures=False`` skips the figures.
    ``stack``: train the seeds of each (dataset, model) stacked, a chunk per task
    (:mod:`experiments.stacked_training`); ``False`` trains them one by one.

    Keys: ``out``, ``runs`` (run configs), ``stores`` (run_id -> directory), ``plane`` (DataFrame),
    ``phases`` (DataFrame or None), ``failures`` (list of strings), ``report`` (path), ``verdicts``
    (text printed at the end), ``timings`` (seconds per stage), ``estimation_seconds`` (DataFrame:
    the estimation tasks' wall time summed per model and estimator), ``engine`` (description).
    """
    import pandas as pd

    from experiments import report as _report
    from experiments.stacked_training import training_groups
    from experiments.training import expand_runs

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "preset.json").write_text(json.dumps(preset, indent=2, sort_keys=True))
    runs = expand_runs(preset)
    failures: list[str] = []
    stores: dict[str, pathlib.Path] = {}
    timings: dict[str, float] = {}
    specs: dict[str, list] = {}
    for cfg in runs:
        try:
            specs[cfg["run_id"]] = resolve_estimators(estimators, cfg["model"])
        except ValueError as exc:
            failures.append(f"estimators of {cfg['run_id']}: {exc}")
    plugins = list(plugins)

    groups = training_groups(runs, stack)
    with sweep.Engine(jobs, scheduler) as engine, \
            sweep.Progress(len(groups) + sum(map(len, specs.values())), enabled=progress) as bar:
        log.info("sweep of %d run(s) on %s", len(runs), engine.describe())
        t0 = time.perf_counter()
        # a worker process gets one TensorFlow thread; this process keeps its own settings
        threads = 1 if engine.parallel and len(groups) > 1 else None
        shared = str(out.resolve())  # workers (maybe on other machines, other working directories) see this path
        tasks = [sweep.Task("train", " + ".join(cfg["run_id"] for cfg in group), _train_group,
                            (group, shared, resume, threads)) for group in groups]
        for group, outcome in zip(groups, engine.map(tasks, bar)):
            for i, cfg in enumerate(group):
                if outcome.ok:
                    stores[cfg["run_id"]] = pathlib.Path(outcome.value[i])
                else:
                    failures.append(f"training {cfg['run_id']}: {outcome.error}")
                    log.error("%s", failures[-1])
                    bar.drop(len(specs.get(cfg["run_id"], [])))
        timings["training"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        # one store: estimate here, parallel over its layer x epoch chunks; several: one task per job
        local = len(stores) == 1
        inner = engine.inner_jobs if local else 1
        run_specs = [(cfg, spec) for cfg in runs if cfg["run_id"] in stores for spec in specs.get(cfg["run_id"], [])]
        tasks = [sweep.Task("estimate", f"{cfg['run_id']} / {spec_label(spec)}", _estimate_one,
                            (str(stores[cfg["run_id"]]), spec, shared),
                            {"resume": resume, "jobs": inner, "progress": progress and local,
                             "subsample": subsample, "random_state": random_state, "plugins": plugins})
                 for cfg, spec in run_specs]
        frames, spent = [], []
        for outcome in engine.map(tasks, bar, local=local):
            if outcome.ok:
                frames.append(outcome.value)
            else:
                failures.append(f"{outcome.key}: {outcome.error}")
                log.error("estimation failed: %s", failures[-1])
            spent.append(outcome.seconds)
        engine_text = engine.describe()
    estimation_seconds = _estimation_seconds([(cfg["model"]["name"], spec_label(spec)) for cfg, spec in run_specs],
                                             spent)
    plane = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    if len(plane):
        plane = distinguish_parameter_sets(plane)
        from ibtoolkit.plane import write_plane

        write_plane(plane, out / "information_plane.csv")
        bad_rows = plane[plane["status"] != "ok"]
        for (run, est, status), group in bad_rows.groupby(["run", "estimator", "status"], sort=True):
            first = group["error"].iloc[0]
            failures.append(f"{run} / {est}: {len(group)} estimate(s) {status}, e.g. {first}")
    timings["estimation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    analysis = _report.analyse(plane) if len(plane) else _report.Analysis.empty()
    failures.extend(analysis.failures)
    if analysis.phases is not None:
        analysis.phases.to_csv(out / "phases.csv", index=False)
    if analysis.contrast is not None:
        analysis.contrast.to_csv(out / "contrast.csv", index=False)
    timings["phases"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    drawn, fig_failures = (_report.make_figures(plane, analysis, out / "figures") if len(plane) and figures
                           else ({}, []))
    failures.extend(fig_failures)
    timings["figures"] = time.perf_counter() - t0

    report_path = _report.write_report(out, preset=preset, runs=runs, stores=stores, plane=plane,
                                       analysis=analysis, figures=drawn, failures=failures,
                                       timings=timings, estimation_seconds=estimation_seconds)
    study_path = None
    if str(preset.get("name", "")).startswith("study") and len(plane):
        # the pre-registered decision rule (docs/study/protocol.md) over this run's plane
        from experiments.study_report import write_study_report

        study_path = write_study_report(out / "study", plane, sources=[out / "information_plane.csv"],
                                        command=f"python -m experiments.study_report {out / 'information_plane.csv'} "
                                                f"--out {out / 'study'}")
    return {"out": out, "runs": runs, "stores": stores, "plane": plane, "phases": analysis.phases,
            "failures": failures, "report": report_path, "verdicts": analysis.verdict_text(),
            "timings": timings, "estimation_seconds": estimation_seconds, "engine": engine_text,
            "study_report": study_path}


def _estimation_seconds(keys, seconds):
    """Wall time of the estimation tasks summed per (model, estimator label), in task order."""
    import pandas as pd

    table = pd.DataFrame(keys, columns=["model", "estimator"]).assign(seconds=list(seconds), stores=1)
    return (table.groupby(["model", "estimator"], sort=False, as_index=False)
            .agg(stores=("stores", "sum"), seconds=("seconds", "sum")))


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("experiments.run", "experiments.training", "experiments.report"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not getattr(h, "_ibtoolkit_cli", False)]
        handler._ibtoolkit_cli = True
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        logger.propagate = True


def main(argv=None) -> int:
    """Entry point of ``python -m experiments.run``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.quiet)
    import ibtoolkit  # noqa: F401  (Keras 2 mode before anything loads TensorFlow)

    for plugin in args.plugin:
        try:
            load_plugin(plugin)
        except Exception as exc:  # noqa: BLE001 - turned into a usage error that names the plugin
            parser.error(f"--plugin {plugin}: could not import it ({type(exc).__name__}: {exc}); give an "
                         f"importable module name or the path of a .py file")
    if args.list_presets:
        for name in _presets.available_presets():
            print(f"{name:14s} {_presets.PRESETS[name]['description']}")
        return 0
    if args.list_estimators:
        from ibtoolkit import available_estimators, get_estimator

        for name in available_estimators():
            est = get_estimator(name)
            doc = (type(est).__doc__ or "").strip().splitlines()
            print(f"{name:12s} {est.describe()}")
            if doc:
                print(f"{'':12s}   {doc[0]}")
        return 0
    preset, out = _configure(args, parser)
    log.info("preset %s -> %s", preset["name"], out)
    try:
        result = run_experiment(preset, out, estimators=args.estimator, jobs=args.jobs, resume=args.resume,
                                progress=not args.no_progress, scheduler=args.scheduler,
                                subsample=args.subsample, random_state=args.subsample_seed,
                                plugins=args.plugin, stack=not args.no_stack)
    except sweep.SchedulerError as exc:  # cannot reach the Dask scheduler: a usage error
        parser.error(str(exc))
    except OSError as exc:  # e.g. the disk filled up while writing tables or figures
        print(f"error: could not write the outputs in {out}: {exc}. Every finished store and estimate is "
              f"kept; free space (or fix the directory) and run the same command with --resume.",
              file=sys.stderr)
        return 1
    print(result["verdicts"])
    print(f"\nreport: {result['report']}")
    if result.get("study_report"):
        print(f"study verdict (protocol's decision rule): {result['study_report']}")
    if result["failures"]:
        print(f"\n{len(result['failures'])} failure(s):", file=sys.stderr)
        for line in result["failures"]:
            print(f"  - {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
