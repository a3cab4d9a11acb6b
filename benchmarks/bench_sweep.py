"""Sweeps at scale: wall time of a grid serial vs joblib vs Dask, and memory/time of MNIST-scale estimation.

    python -m benchmarks.bench_sweep grid  [--repeats 3] [--seeds 2] [--epochs 200] [--jobs -1]
    python -m benchmarks.bench_sweep mnist [--dataset fashion_mnist] [--epochs 20] [--keep DIR]
    python -m benchmarks.bench_sweep all

``grid``: a small grid on the 12-bit data (DNN tanh and BNN ste_sign, Tishby widths 10-7-5-4-3,
``--epochs`` epochs, 31 log-spaced recorded epochs, ``--seeds`` seeds; estimators binning + kde for the
DNN, exact + kde for the BNN) through :func:`experiments.run.run_experiment` (training and estimation
stages, no figures), three ways: serial, joblib/loky with ``--jobs`` workers (-1: all cores) and a Dask
``LocalCluster`` of as many single-threaded worker processes.  Every (engine, repeat) runs in a fresh
subprocess that has already imported TensorFlow, so each parallel engine pays its own worker start-up
(process spawn + TensorFlow import in every worker) in every repeat, as a user running one sweep does.
Engines alternate within each repeat (same machine load); medians over repeats, speed-up = serial /
engine.  The three information-plane tables are compared too (max |difference|).

``mnist``: the Saxe et al. MNIST architecture 784-1024-20-20-20-10 (SGD lr 1e-3, batch 128, the
``paper-mnist`` preset) trained for ``--epochs`` epochs on ``--dataset`` (Fashion-MNIST from Debian's
``dataset-fashion-mnist`` package when MNIST is not available offline), DNN (tanh) and BNN (ste_sign),
every epoch recorded on the 10 000 test images.  Each stage runs in its own subprocess, which reports
its wall time and peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) beside the
memory right after the imports (``base``): training with the callback, ``exact`` (BNN) / ``binning``
bin width 0.5 (DNN) over every layer x epoch, ``kde`` over every layer x epoch at N = 10 000, and
``kde``/``ksg`` on seeded subsets (``subsample``) of a few epochs, which gives their cost per
layer-epoch at width 1024 and 20.  The size of all activations of a store (what loading every epoch of
every layer at once would take) is printed beside the peak, since :func:`ibtoolkit.information_plane`
streams one layer at a time in epoch chunks of at most ``CHUNK_BYTES``.

Writes ``benchmarks/results/sweep_grid.csv`` and ``benchmarks/results/sweep_mnist.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ("serial", "joblib", "dask")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _child(args: list[str]) -> dict:
    """Run ``python -m benchmarks.bench_sweep <args>`` and return the JSON of its last stdout line."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_sweep", *args], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- (a) the grid ---------------------------------------------------------------------------------
def grid_preset(seeds: int, epochs: int) -> dict:
    from experiments import presets

    preset = presets.get_preset("quick")
    preset["name"] = "bench-grid"
    preset["seeds"] = list(range(seeds))
    for model in preset["models"]:
        model.update(epochs=epochs, schedule="log", n_points=30)
        model["estimators"] = ([dict(presets.EXACT), dict(presets.KDE)] if model["precision"] == "binary"
                               else [dict(presets.BINNING_TANH), dict(presets.KDE)])
    return preset


def _grid_once(engine: str, out: str, seeds: int, epochs: int, jobs: int) -> dict:
    import ibtoolkit  # noqa: F401  (TensorFlow imported before the clock starts, in every engine)
    import tensorflow  # noqa: F401

    from experiments.run import run_experiment

    kwargs = {"serial": {}, "joblib": {"jobs": jobs}, "dask": {"scheduler": "local", "jobs": jobs}}[engine]
    t0 = time.perf_counter()
    result = run_experiment(grid_preset(seeds, epochs), out, progress=False, figures=False, **kwargs)
    wall = time.perf_counter() - t0
    return {"engine": engine, "wall": wall, "training": result["timings"]["training"],
            "estimation": result["timings"]["estimation"], "failures": len(result["failures"]),
            "engine_text": result["engine"], "rows": len(result["plane"])}


def bench_grid(repeats: int, seeds: int, epochs: int, jobs: int) -> list[dict]:
    import numpy as np

    from ibtoolkit.plane import read_plane

    n_workers = jobs if jobs > 0 else os.cpu_count()
    print(f"grid: 2 models x {seeds} seeds = {2 * seeds} training runs, {4 * seeds} estimation jobs, "
          f"{epochs} epochs; {n_workers} workers; {repeats} repeats; load {os.getloadavg()[0]:.2f}", flush=True)
    times: dict[str, list[dict]] = {e: [] for e in ENGINES}
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    tables = {}
    try:
        for r in range(repeats):
            for engine in ENGINES:
                out = root / f"{engine}-{r}"
                res = _child(["_grid_once", engine, str(out), str(seeds), str(epochs), str(jobs)])
                times[engine].append(res)
                print(f"  repeat {r} {engine:6s} {res['wall']:7.1f} s (training {res['training']:.1f}, "
                      f"estimation {res['estimation']:.1f}; {res['engine_text']}; failures {res['failures']})",
                      flush=True)
                if r == 0:
                    df = read_plane(out / "information_plane.csv")
                    tables[engine] = df.sort_values(["run", "estimator", "layer", "epoch"]).reset_index(drop=True)
                shutil.rmtree(out, ignore_errors=True)
        rows = []
        serial = statistics.median(t["wall"] for t in times["serial"])
        for engine in ENGINES:
            ref, df = tables["serial"], tables[engine]
            diff = float(np.nanmax(np.abs(np.r_[df["ixt"] - ref["ixt"], df["ity"] - ref["ity"]])))
            med = {k: statistics.median(t[k] for t in times[engine]) for k in ("wall", "training", "estimation")}
            rows.append({"engine": engine, "workers": 1 if engine == "serial" else n_workers,
                         "wall_median_s": round(med["wall"], 2), "training_median_s": round(med["training"], 2),
                         "estimation_median_s": round(med["estimation"], 2),
                         "walls_s": " ".join(f"{t['wall']:.1f}" for t in times[engine]),
                         "speedup_vs_serial": round(serial / med["wall"], 2),
                         "max_abs_diff_bits_vs_serial": diff, "repeats": repeats,
                         "load1_end": round(os.getloadavg()[0], 2)})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'engine':8s} {'workers':>7s} {'median s':>9s} {'training':>9s} {'estim.':>7s} {'speed-up':>8s} "
          f"{'max |diff|':>10s}")
    for row in rows:
        print(f"{row['engine']:8s} {row['workers']:7d} {row['wall_median_s']:9.1f} {row['training_median_s']:9.1f} "
              f"{row['estimation_median_s']:7.1f} {row['speedup_vs_serial']:8.2f} "
              f"{row['max_abs_diff_bits_vs_serial']:10.2g}")
    _write(RESULTS / "sweep_grid.csv", rows)
    return rows


# -- (b) MNIST scale ----------------------------------------------------------------------------------
def mnist_runs(dataset: str, epochs: int) -> list[dict]:
    from experiments import presets
    from experiments.training import expand_runs

    preset = presets.get_preset("paper-mnist")
    preset["datasets"] = [dataset]
    preset["seeds"] = [0]
    for model in preset["models"]:
        model.update(epochs=epochs, schedule="all")
    return expand_runs(preset)


def _stage(name: str, out: str, dataset: str, epochs: int, spec_json: str, subsample: int, n_epochs: int,
           layers: str = "all") -> dict:
    """One stage in this (fresh) process: train one run, or estimate one spec on one store.

    ``n_epochs`` > 0: that many recorded epochs, evenly spaced from the last one back; ``layers``
    ``"wide"``: only the first (1024-wide) layer, ``"narrow"``: only the 20-wide ones."""
    import ibtoolkit  # noqa: F401
    import numpy as np
    import tensorflow  # noqa: F401

    base = _rss_mb()
    runs = {r["model"]["precision"]: r for r in mnist_runs(dataset, epochs)}
    precision, _, what = name.partition(":")
    cfg = runs[precision]
    t0 = time.perf_counter()
    info: dict = {}
    if what == "train":
        from experiments.training import train_run

        directory = train_run(cfg, out, resume=False)
        from ibtoolkit import open_store

        store = open_store(directory)
        info = {"recorded_epochs": len(store.epochs), "final_val_accuracy":
                store.metrics.get(int(store.epochs[-1]), {}).get("val_accuracy")}
    else:
        from ibtoolkit import information_plane, open_store

        store = open_store(Path(out) / "runs" / cfg["run_id"])
        epochs_sel = None if n_epochs <= 0 else np.unique(
            np.linspace(len(store.epochs) - 1, 0, n_epochs).round().astype(int))
        chosen = None if epochs_sel is None else store.epochs[epochs_sel]
        wide = [name for name, w in store.widths.items() if w >= 1024]
        chosen_layers = {"all": None, "wide": wide,
                         "narrow": [name for name in store.layers if name not in wide]}[layers]
        df = information_plane(store, [json.loads(spec_json)], layers=chosen_layers, epochs=chosen,
                               progress=False, subsample=subsample or None, random_state=0)
        ok = df[df["status"] == "ok"]
        per = {}
        for width, g in df.groupby("width"):
            per[int(width)] = len(g)
        info = {"estimates": len(df), "ok": len(ok), "per_width": per,
                "ixt_max": float(ok["ixt"].max()) if len(ok) else None}
    seconds = time.perf_counter() - t0
    return {"stage": name, "seconds": seconds, "base_mb": base, "peak_mb": _rss_mb(), **info}


def _store_bytes(directory: Path) -> tuple[int, int]:
    """(bytes on disk, bytes of every layer x epoch as float32 in memory) of one store."""
    from ibtoolkit import open_store

    store = open_store(directory)
    disk = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    n = store.manifest["n_samples"]
    dense = sum(n * w * 4 for w in store.widths.values()) * len(store.epochs)
    return disk, dense


def bench_mnist(dataset: str, epochs: int, keep: str | None) -> list[dict]:
    from ibtoolkit.plane import CHUNK_BYTES

    out = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench_sweep_mnist_"))
    print(f"MNIST scale: {dataset}, 784-1024-20-20-20-10, {epochs} epochs every one recorded, analysis set = "
          f"10 000 test images; out {out}; CHUNK_BYTES {CHUNK_BYTES / 2**20:.0f} MiB; load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    stages = []
    for precision, cheap in (("binary", {"name": "exact"}), ("full", {"name": "binning", "bin_size": 0.5})):
        kde, ksg = json.dumps({"name": "kde", "noise_variance": 0.1}), json.dumps({"name": "ksg", "k": 3})
        plan = [("train", "{}", 0, 0, "all"),
                (cheap["name"], json.dumps(cheap), 0, 0, "all"),
                ("kde", kde, 0, 0, "all"),
                ("kde", kde, 0, 3, "wide"),
                ("kde", kde, 2000, 0, "wide"),
                ("ksg", ksg, 0, 1, "narrow"),
                ("ksg", ksg, 1000, 3, "wide"),
                ("ksg", ksg, 2000, 2, "wide")]
        for what, spec, subsample, n_epochs, layers in plan:
            res = _child(["_stage", f"{precision}:{what}", str(out), dataset, str(epochs), spec, str(subsample),
                          str(n_epochs), layers])
            label = what + (f" N={subsample}" if subsample else " N=10000" if what != "train" else "")
            if what != "train":
                label += {"all": ", all layers", "wide": ", width 1024", "narrow": ", width 20 x3"}[layers]
                label += f", {n_epochs} epoch(s)" if n_epochs else ", all epochs"
            n_est = res.get("estimates")
            row = {"model": precision, "stage": label, "seconds": round(res["seconds"], 1),
                   "peak_rss_mb": round(res["peak_mb"]), "rss_after_imports_mb": round(res["base_mb"]),
                   "estimates": n_est or "",
                   "ms_per_layer_epoch": round(1000 * res["seconds"] / n_est, 1) if n_est else "",
                   "note": json.dumps({k: v for k, v in res.items()
                                       if k not in ("stage", "seconds", "base_mb", "peak_mb", "estimates")})}
            if what == "train":
                run = next(r for r in mnist_runs(dataset, epochs) if r["model"]["precision"] == precision)
                disk, dense = _store_bytes(out / "runs" / run["run_id"])
                row["note"] = json.dumps({**json.loads(row["note"]), "store_disk_mb": round(disk / 2**20),
                                          "all_epochs_float32_mb": round(dense / 2**20)})
            stages.append(row)
            print(f"  {precision:6s} {label:44s} {row['seconds']:8.1f} s  peak RSS {row['peak_rss_mb']:6d} MB "
                  f"(after imports {row['rss_after_imports_mb']} MB)  {row['ms_per_layer_epoch']} ms/est  "
                  f"{row['note']}", flush=True)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    _write(RESULTS / "sweep_mnist.csv", stages)
    return stages


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_grid_once":
        engine, out, seeds, epochs, jobs = argv[1:6]
        print(json.dumps(_grid_once(engine, out, int(seeds), int(epochs), int(jobs))))
        return 0
    if argv and argv[0] == "_stage":
        name, out, dataset, epochs, spec, subsample, n_epochs, layers = argv[1:9]
        print(json.dumps(_stage(name, out, dataset, int(epochs), spec, int(subsample), int(n_epochs), layers)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["grid", "mnist", "all"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (grid default 200, mnist default 20)")
    parser.add_argument("--jobs", type=int, default=-1)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--keep", help="mnist: keep the stores in this directory")
    args = parser.parse_args(argv)
    if args.what in ("grid", "all"):
        bench_grid(args.repeats, args.seeds, args.epochs or 200, args.jobs)
    if args.what in ("mnist", "all"):
        bench_mnist(args.dataset, args.epochs or 20, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
