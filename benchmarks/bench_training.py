"""Training many seeds: stacked members (``ibtoolkit.models.stack``) vs separate fits, with recording.

Run: ``nice python -m benchmarks.bench_training [--epochs 100] [--repeats 2] [--sizes 1,4,10,20]
[--separate 2] [--e2e-epochs 5] [--e2e-seeds 10] [--no-e2e] [--steps-per-execution 1]``

Part 1, time per model-epoch (the `paper` preset's 12-bit DNN, tanh, Adam 4e-4, batch 512, and BNN,
ste_sign, Adam 1e-3, batch 256; train on the 80 % split, validation at the recorded epochs as
``experiments.run`` does, ``IBCallback`` on all 4096 inputs):

* stacked: S members (seeds 0..S-1) in one stacked model with an XLA-compiled training step, as
  ``experiments.run`` trains them, one ``IBCallback`` writing S stores;
* separate: ``--separate`` ordinary fits one after the other, each with its own ``IBCallback``, as
  ``--no-stack`` trains them (plain graph) and, for comparison, with an XLA-compiled step;
  A separate fit's cost per model-epoch does not depend on how many others follow it, so S separate
  fits cost S times one; measuring two of them (not S) keeps the run short.

Two schedules: ``log`` at the paper's density (``n_points = epochs * 270 / 8000``, log-spaced) and
``all`` (every epoch recorded).  Per fit, the time per epoch is the wall time from the end of epoch
``--warmup`` to the end of the last epoch over the number of epochs between (tracing, XLA
compilation and the store's creation are one-off costs of a fit, the same for 8000 epochs as for
100, and are left out), divided by S for the stack: seconds per model-epoch.  For every repeat the
separate fits and the stacks of each S run next to each other, so the host's drift hits both; the
table gives the medians over repeats and the ratio separate / stacked (the speed-up).  Both sides
use the same ``steps_per_execution``.

Part 2, memory: peak resident memory (``VmHWM``) of a fresh process (TensorFlow included) that
trains one stacked chunk of 20 members of each net for 30 epochs recording every epoch, as
``experiments.run`` trains a chunk (XLA-compiled step).

Part 3, end to end: ``run_experiment`` of ``--preset paper --seeds 10`` (6 models x 10 seeds, the
preset's estimators: binning/exact, kde, ksg) at ``--e2e-epochs`` epochs, stacked and ``--no-stack``
(jobs 1), seconds per stage.  Extrapolated to the preset's 8000 epochs: training = measured +
(8000 - E) x runs x the side's time per model-epoch from part 1 (log schedule); estimation, phases and
figures scale with the number of recorded (run, epoch) pairs (271 per run at 8000 epochs on the log
schedule, ~370 for the BNNs' ``dense:100,log``).

Writes ``benchmarks/results/training.csv`` and prints a markdown table (copied to
``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ibtoolkit  # noqa: E402, F401
import tensorflow as tf  # noqa: E402

from experiments import presets, training  # noqa: E402
from ibtoolkit import models  # noqa: E402
from ibtoolkit.callback import IBCallback  # noqa: E402
from ibtoolkit.schedules import epoch_schedule  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NETS = {"dnn": "dnn-tanh", "bnn": "bnn-ste_sign"}
FULL_EPOCHS = 8000


class _Clock(tf.keras.callbacks.Callback):
    """Wall time at every epoch end (placed after IBCallback, so recording is inside)."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())


def _run_config(net: str) -> dict:
    preset = presets.get_preset("paper")
    preset["seeds"] = [0]
    return next(c for c in training.expand_runs(preset) if c["model"]["name"] == NETS[net])


def _schedule(name: str, epochs: int):
    if name == "all":
        return "all", 100
    return "log", max(2, round(epochs * 270 / FULL_EPOCHS))


def _per_epoch(clock: _Clock, warmup: int) -> float:
    ends = clock.ends
    return (ends[-1] - ends[warmup - 1]) / (len(ends) - warmup)


def _fit(model, x, y, val, cfg, schedule, n_points, epochs, cb_kwargs, directory):
    clock = _Clock()
    recorded = epoch_schedule(schedule, epochs, n_points)
    callback = IBCallback(cfg["x_an"], cfg["y_an"], directory=directory, schedule=schedule, n_points=n_points,
                          **cb_kwargs)
    model.fit(x, y, validation_data=val, validation_freq=[int(e) for e in recorded if e >= 1] or 1,
              epochs=epochs, batch_size=int(cfg["model"]["batch_size"]), shuffle=True, verbose=0,
              callbacks=[callback, clock])
    return clock


def _build(cfg, seeds, spe, jit=None):
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    out = []
    for seed in seeds:
        m = training.build_model(cfg["model"], input_dim=12, n_classes=2, seed=seed)
        m.compile(optimizer=m.optimizer, loss=m.loss, metrics=["accuracy"], steps_per_execution=spe,
                  jit_compile=jit)
        out.append(m)
    return out


def _data(net):
    cfg = _run_config(net)
    data = training.prepare_data(cfg)
    return {**cfg, "x_train": data["x_train"], "y_train": data["y_train"], "val": (data["x_test"], data["y_test"]),
            "x_an": data["x_analysis"], "y_an": data["y_analysis"]}


def part1(args, work: Path) -> list[dict]:
    rows = []
    for repeat in range(args.repeats):
        for net in ("dnn", "bnn"):
            cfg = _data(net)
            for sched_name in ("log", "all"):
                schedule, n_points = _schedule(sched_name, args.epochs)
                times = {False: [], True: []}
                for k in range(args.separate):
                    for jit in (False, True):
                        (model,) = _build(cfg, [k], args.steps_per_execution, jit)
                        d = work / f"sep-{net}-{sched_name}-{k}"
                        clock = _fit(model, cfg["x_train"], cfg["y_train"], cfg["val"], cfg, schedule, n_points,
                                     args.epochs, {}, d)
                        times[jit].append(_per_epoch(clock, args.warmup))
                        shutil.rmtree(d, ignore_errors=True)
                for jit in (False, True):
                    rows.append({"part": "per_model_epoch", "net": net, "schedule": sched_name, "S": 1,
                                 "side": "separate_xla" if jit else "separate", "repeat": repeat,
                                 "seconds": statistics.median(times[jit]), "path": ""})
                separate = statistics.median(times[False])
                for s in args.sizes:
                    members = _build(cfg, list(range(s)), args.steps_per_execution)
                    stacked = models.stack(members, names=[f"s{i}" for i in range(s)])
                    stacked.compile(optimizer=members[0].optimizer, loss=members[0].loss, metrics=["accuracy"],
                                    steps_per_execution=args.steps_per_execution, jit_compile=True)
                    x, y = stacked.member_data(cfg["x_train"], cfg["y_train"], seeds=list(range(s)))
                    val = stacked.member_data(*cfg["val"])
                    d = work / f"stack-{net}-{sched_name}-{s}"
                    clock = _fit(stacked, x, y, val, cfg, schedule, n_points, args.epochs, {}, d)
                    per = _per_epoch(clock, args.warmup) / s
                    shutil.rmtree(d, ignore_errors=True)
                    rows.append({"part": "per_model_epoch", "net": net, "schedule": sched_name, "S": s,
                                 "side": "stacked", "repeat": repeat, "seconds": per, "path": stacked.path})
                    print(f"repeat {repeat} {net} {sched_name} S={s}: stacked {per * 1e3:.2f} ms, separate "
                          f"{separate * 1e3:.2f} ms per model-epoch, x{separate / per:.1f}", flush=True)
    return rows


_MEMORY_CHILD = """
import sys, tempfile
import ibtoolkit, tensorflow as tf
from benchmarks.bench_training import _data, _build, _fit
from ibtoolkit import models
net = sys.argv[1]
cfg = _data(net)
members = _build(cfg, list(range(20)), 1)
stacked = models.stack(members, names=[f"s{i}" for i in range(20)])
stacked.compile(optimizer=members[0].optimizer, loss=members[0].loss, metrics=["accuracy"], jit_compile=True)
x, y = stacked.member_data(cfg["x_train"], cfg["y_train"], seeds=list(range(20)))
with tempfile.TemporaryDirectory() as d:
    _fit(stacked, x, y, stacked.member_data(*cfg["val"]), cfg, "all", 100, 30, {}, d + "/s")
# VmHWM is this process's own peak; ru_maxrss would start from the parent's (Linux keeps it across exec)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def part2() -> list[dict]:
    rows = []
    for net in ("dnn", "bnn"):
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, net], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent.parent)
        kib = int(out.stdout.strip().splitlines()[-1])
        rows.append({"part": "memory_chunk_20", "net": net, "schedule": "all", "S": 20, "side": "stacked",
                     "repeat": 0, "seconds": "", "path": "", "peak_rss_mib": kib / 1024})
        print(f"memory: 20-member {net} chunk, peak RSS {kib / 1024:.0f} MiB", flush=True)
    return rows


def _recorded_pairs(preset, epochs) -> int:
    return sum(len(epoch_schedule(m.get("schedule", "log"), epochs, int(m.get("n_points", 100))))
               for m in preset["models"]) * len(preset["seeds"])


def part3(args, work: Path, per_epoch: dict) -> list[dict]:
    from experiments.run import run_experiment

    rows = []
    preset = presets.get_preset("paper")
    preset["seeds"] = list(range(args.e2e_seeds))
    full_pairs = _recorded_pairs(preset, FULL_EPOCHS)
    for m in preset["models"]:
        m["epochs"] = args.e2e_epochs
    small_pairs = _recorded_pairs(preset, args.e2e_epochs)
    n_runs = len(preset["models"]) * len(preset["seeds"])
    totals = {}
    for side, stack in (("stacked", True), ("separate", False)):
        out = work / f"e2e-{side}"
        t0 = time.perf_counter()
        result = run_experiment(preset, out, jobs=1, progress=False, stack=stack)
        total = time.perf_counter() - t0
        if result["failures"]:
            raise RuntimeError(f"end-to-end {side}: {result['failures'][:3]}")
        timings = dict(result["timings"])
        timings["report_and_rest"] = total - sum(timings.values())
        extra_epochs = (FULL_EPOCHS - args.e2e_epochs) * n_runs * per_epoch[side]
        full = {stage: (sec + extra_epochs if stage == "training" else sec * full_pairs / small_pairs)
                for stage, sec in timings.items()}
        totals[side] = (total, sum(full.values()))
        for stage, sec in timings.items():
            rows.append({"part": "end_to_end", "net": "paper x10", "schedule": stage, "S": n_runs, "side": side,
                         "repeat": 0, "seconds": sec, "path": "", "extrapolated_seconds": full[stage]})
        print(f"end to end {side}: {total:.0f} s at {args.e2e_epochs} epochs ({timings}); extrapolated to "
              f"{FULL_EPOCHS} epochs {sum(full.values()) / 3600:.2f} h", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    print(f"end to end speed-up: measured x{totals['separate'][0] / totals['stacked'][0]:.2f}, extrapolated "
          f"x{totals['separate'][1] / totals['stacked'][1]:.2f}")
    return rows


def _table(rows) -> str:
    lines = ["| net | schedule | S | path | separate ms/model-epoch (plain / XLA) | stacked ms/model-epoch | "
             "speed-up vs separate (plain / XLA) |", "|---|---|---|---|---|---|---|"]
    per = [r for r in rows if r["part"] == "per_model_epoch"]
    for net in ("dnn", "bnn"):
        for sched in ("log", "all"):
            sep, xla = (statistics.median(r["seconds"] for r in per if (r["net"], r["schedule"], r["side"]) ==
                                          (net, sched, side)) for side in ("separate", "separate_xla"))
            for s in sorted({r["S"] for r in per if r["side"] == "stacked"}):
                st = [r for r in per if (r["net"], r["schedule"], r["side"], r["S"]) == (net, sched, "stacked", s)]
                if st:
                    med = statistics.median(r["seconds"] for r in st)
                    lines.append(f"| {net} | {sched} | {s} | {st[0]['path']} | {sep * 1e3:.2f} / {xla * 1e3:.2f} | "
                                 f"{med * 1e3:.2f} | x{sep / med:.1f} / x{xla / med:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--separate", type=int, default=2)
    p.add_argument("--sizes", default="1,4,10,20")
    p.add_argument("--steps-per-execution", type=int, default=1)
    p.add_argument("--e2e-epochs", type=int, default=5)
    p.add_argument("--e2e-seeds", type=int, default=10)
    p.add_argument("--no-e2e", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average before: {os.getloadavg()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        rows = part1(args, work)
        print(_table(rows), flush=True)
        if not args.no_memory:
            rows += part2()
        if not args.no_e2e:
            per = [r for r in rows if r["part"] == "per_model_epoch" and r["schedule"] == "log"]
            chunk = min(args.sizes, key=lambda s: abs(s - min(args.e2e_seeds, 20)))  # the size of a sweep chunk
            per_epoch = {"separate": statistics.median(r["seconds"] for r in per if r["side"] == "separate"),
                         "stacked": statistics.median(r["seconds"] for r in per if r["side"] == "stacked"
                                                      and r["S"] == chunk)}
            rows += part3(args, work, per_epoch)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    RESULTS.mkdir(exist_ok=True)
    keys = ["part", "net", "schedule", "S", "side", "repeat", "seconds", "path", "peak_rss_mib",
            "extrapolated_seconds"]
    with open(RESULTS / "training.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in keys})


if __name__ == "__main__":
    main()
