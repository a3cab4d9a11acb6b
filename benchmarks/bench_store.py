"""Per-epoch write cost of the activation store, and read cost, side by side with a naive reference.

    python benchmarks/bench_store.py [--epochs 10000] [--n 4096]

Shapes: the Shwartz-Ziv & Tishby hidden layers, N x (10 + 7 + 5 + 4 + 3).  Measured in one run:

* ``store``: :meth:`ActivationStore.append` (layer files via temp + rename, one line appended to the
  epoch log), binary (bit-packed) and float32 layers, medians over the first 200 epochs and over the
  last 200 epochs of a run of ``--epochs`` epochs (the cost must not grow with the run);
* ``store fsync``: the same with ``fsync=True`` (durable against power loss);
* ``naive``: ``np.save`` per layer plus rewriting one JSON manifest that lists every epoch (the
  design the epoch log replaces), at the same epoch counts;
* ``read``: :meth:`ActivationStore.read` of one layer over 270 epochs (the paper's schedule size).

Prints medians and ratios and writes ``benchmarks/results/store.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ibtoolkit.store import ActivationStore, open_store

WIDTHS = [10, 7, 5, 4, 3]
WINDOW = 200


def _acts(rng, n, binary):
    return {f"h{i}": (np.where(rng.random((n, w)) < 0.5, -1.0, 1.0) if binary else rng.standard_normal((n, w)))
            .astype(np.float32) for i, w in enumerate(WIDTHS)}


def bench_store(root, n, epochs, binary, fsync=False):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 2, (n, 12)).astype(np.float32), rng.integers(0, 2, n)
    acts = [_acts(rng, n, binary) for _ in range(4)]
    d = Path(tempfile.mkdtemp(dir=root))
    s = ActivationStore.create(d / "run", inputs=x, labels=y, layers=[(f"h{i}", w) for i, w in enumerate(WIDTHS)],
                               binary=[binary] * len(WIDTHS), fsync=fsync)
    times = np.empty(epochs)
    for e in range(epochs):
        t0 = time.perf_counter()
        s.append(e, acts[e % 4], {"loss": 0.5, "accuracy": 0.9})
        times[e] = time.perf_counter() - t0
    s.close()
    return times, d


def bench_naive(root, n, epochs, binary):
    """np.save per layer + full manifest rewrite (temp + os.replace) each epoch; no checksums."""
    rng = np.random.default_rng(0)
    acts = [_acts(rng, n, binary) for _ in range(4)]
    d = Path(tempfile.mkdtemp(dir=root))
    manifest = {"epochs": []}
    times = np.empty(epochs)
    for e in range(epochs):
        t0 = time.perf_counter()
        for name, a in acts[e % 4].items():
            np.save(d / f"{name}_{e:08d}.npy", np.packbits(a > 0, axis=1) if binary else a)
        manifest["epochs"].append({"epoch": e, "metrics": {"loss": 0.5, "accuracy": 0.9}})
        tmp = d / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest))
        tmp.replace(d / "manifest.json")
        times[e] = time.perf_counter() - t0
    return times, d


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "store.csv"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench_store_")
    rows = []

    def add(case, times, first=True):
        early = float(np.median(times[:WINDOW]) * 1e3)
        late = float(np.median(times[-WINDOW:]) * 1e3) if first else float("nan")
        rows.append({"case": case, "n": args.n, "epochs": len(times), "median_ms_first200": round(early, 4),
                     "median_ms_last200": round(late, 4)})
        print(f"{case:32s} epochs={len(times):6d}  median ms/epoch: first {WINDOW}: {early:7.3f}   "
              f"last {WINDOW}: {late:7.3f}")
        return early, late

    try:
        sb, db = bench_store(root, args.n, args.epochs, binary=True)
        e_sb, l_sb = add("store binary (packbits)", sb)
        nb, dn = bench_naive(root, args.n, args.epochs, binary=True)
        e_nb, l_nb = add("naive binary (json manifest)", nb)
        shutil.rmtree(dn)
        sf, df = bench_store(root, args.n, 2 * WINDOW, binary=False)
        add("store float32", sf)
        sy, dy = bench_store(root, args.n, WINDOW, binary=True, fsync=True)
        add("store binary fsync=True", sy, first=False)
        print(f"ratio naive/store at the last {WINDOW} of {args.epochs} epochs (binary): {l_nb / l_sb:.2f}")
        print(f"ratio store last/first (cost growth over the run): {l_sb / e_sb:.2f}")
        for d, name, label in ((db, "h0", "read binary h0 (E=270)"), (df, "h0", "read float32 h0 (E=270)")):
            s = open_store(d / "run")
            eps = s.epochs[:270]
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                s.read(name, eps)
                ts.append(time.perf_counter() - t0)
            med = float(np.median(ts) * 1e3)
            rows.append({"case": label, "n": args.n, "epochs": len(eps), "median_ms_first200": round(med, 3),
                         "median_ms_last200": float("nan")})
            print(f"{label:32s} {med:8.2f} ms per call")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
