"""Estimation of real stores with and without the reuse of repeated arrays, side by side.

Run: ``python -m benchmarks.bench_reuse OUT [--arm NAME ...] [--seeds 0,1,2] [--repeats 1]``

``OUT`` is the output directory of ``python -m experiments.run`` (its ``runs/`` stores and
``preset.json``).  For every selected store, :func:`ibtoolkit.information_plane` runs the preset's
estimators of that model twice in one process, ``reuse=True`` and ``reuse=False`` one right after
the other (order alternating between stores; one untimed warm-up per model first), and the rows
are checked identical.  Per store: the wall time of both, their ratio, and the share of recorded
(layer, epoch) arrays that repeat an earlier array of the same layer exactly (counted here by
comparing the arrays, independently of the checksums the plane uses).  Rows go to ``benchmarks/results/reuse.csv``; the summary per arm gives
the summed seconds of both sides (the time a sweep spends) and the median per-store ratio.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow loads)


def repeated_share(store) -> float:
    """Share of a store's recorded (layer, epoch) arrays equal to an earlier array of the same layer."""
    repeats = total = 0
    for layer in store.layers:
        seen: dict[bytes, list[np.ndarray]] = {}  # bucketed by the first rows; equality checked in full
        for t in store.read(layer):
            bucket = seen.setdefault(t[:8].tobytes(), [])
            if any(np.array_equal(t, u) for u in bucket):
                repeats += 1
            else:
                bucket.append(t)
            total += 1
    return repeats / total if total else 0.0


def _estimators_of(preset: dict) -> dict[str, list]:
    return {m["name"]: m["estimators"] for m in preset["models"]}


def _time(store, specs, reuse: bool):
    from ibtoolkit import information_plane

    start = time.perf_counter()
    table = information_plane(store, specs, progress=False, reuse=reuse)
    return time.perf_counter() - start, table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="an experiments.run output directory")
    p.add_argument("--arm", action="append", help="model name(s) of the preset (default: all)")
    p.add_argument("--seeds", help="comma list of seeds (default: all)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--csv", default="benchmarks/results/reuse.csv")
    args = p.parse_args(argv)

    from ibtoolkit import open_store

    out = Path(args.out)
    preset = json.loads((out / "preset.json").read_text())
    estimators = _estimators_of(preset)
    seeds = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
    rows, warmed = [], set()
    for directory in sorted((out / "runs").iterdir()):
        store = open_store(directory)
        run = store.run or {}
        model, seed = run.get("model"), run.get("seed")
        if model not in estimators or (args.arm and model not in args.arm) or (seeds and seed not in seeds):
            continue
        if model not in warmed:  # imports, compiled functions and caches outside the timings
            from ibtoolkit import information_plane

            information_plane(store, estimators[model], epochs=store.epochs[:2], progress=False)
            warmed.add(model)
        share = repeated_share(store)
        for r in range(args.repeats):
            order = (True, False) if (len(rows) + r) % 2 == 0 else (False, True)
            timed = {reuse: _time(store, estimators[model], reuse) for reuse in order}
            if not timed[True][1].equals(timed[False][1]):
                raise SystemExit(f"{directory.name}: the tables with and without reuse differ")
            rows.append({"run": directory.name, "model": model, "seed": seed, "repeat": r,
                         "repeated_share": round(share, 4), "seconds_reuse": round(timed[True][0], 3),
                         "seconds_every_epoch": round(timed[False][0], 3),
                         "ratio": round(timed[False][0] / timed[True][0], 3)})
            print(f"{directory.name}: repeated {share:.0%}, {timed[False][0]:.1f} s every epoch, "
                  f"{timed[True][0]:.1f} s with reuse (x{rows[-1]['ratio']:.2f})", flush=True)
    if not rows:
        raise SystemExit(f"no store of {out / 'runs'} matches the selection")
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n| model | stores | repeated arrays | seconds every epoch | seconds with reuse | median ratio |")
    print("|---|---|---|---|---|---|")
    for model in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == model]
        print(f"| {model} | {len({r['run'] for r in sel})} | {np.mean([r['repeated_share'] for r in sel]):.0%} | "
              f"{sum(r['seconds_every_epoch'] for r in sel):.0f} | {sum(r['seconds_reuse'] for r in sel):.0f} | "
              f"x{np.median([r['ratio'] for r in sel]):.2f} |")
    every, reuse = sum(r["seconds_every_epoch"] for r in rows), sum(r["seconds_reuse"] for r in rows)
    print(f"| all | {len({r['run'] for r in rows})} | | {every:.0f} | {reuse:.0f} | x{every / reuse:.2f} (sums) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
