"""Per-epoch write cost of the activation store, and read cost, side by side with a naive reference.

    python -m benchmarks.bench_store [--epochs 10000] [--n 4096] [--long-epochs 14000]

Shapes: the Shwartz-Ziv & Tishby hidden layers, N x (10 + 7 + 5 + 4 + 3).  Measured in one run:

* ``store``: :meth:`ActivationStore.append` (one block written at the end of each open layer file,
  one line appended to the epoch log), binary (bit-packed) and float32 layers, medians over the
  first 200 epochs and over the last 200 epochs of a run of ``--epochs`` epochs (the cost must not
  grow with the run);
* ``naive``: ``np.save`` per layer plus rewriting one JSON manifest that lists every epoch (the
  design the epoch log replaces).  The writers alternate within each epoch, so they see the same
  machine load;
* ``fsync``: 200 epochs with ``fsync=True`` alternating with 200 without (durable against power loss);
* ``read``: :meth:`ActivationStore.read` of one layer over 270 epochs (the paper's schedule size),
  against a bare ``np.fromfile`` of the same layer file (the price of the size and CRC checks);
* ``long run``: one float32 store of ``--long-epochs`` epochs (475 kB each) written back to back,
  first with the writer's page-cache advice turned off, then on (see "Page cache" in
  :mod:`ibtoolkit.store`), each from a flushed cache (``os.sync``, the first store deleted):
  medians per 1000 epochs.

Prints medians and ratios and writes ``benchmarks/results/store.csv``: one row per case with the
median ms per epoch (per call for ``read``) over the first and the last ``samples_per_median``
epochs (calls) of that case (``median_ms_last`` is empty where only one median is taken).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
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


class _Store:
    """The store under test (one run directory)."""

    def __init__(self, root, n, binary, fsync=False):
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 2, (n, 12)).astype(np.float32), rng.integers(0, 2, n)
        self.dir = Path(tempfile.mkdtemp(dir=root)) / "run"
        self.store = ActivationStore.create(self.dir, inputs=x, labels=y, fsync=fsync,
                                            layers=[(f"h{i}", w) for i, w in enumerate(WIDTHS)],
                                            binary=[binary] * len(WIDTHS))

    def step(self, epoch, acts):
        self.store.append(epoch, acts, {"loss": 0.5, "accuracy": 0.9})


class _Naive:
    """Reference: np.save per layer + full JSON manifest rewrite (temp + os.replace) per epoch; no checksums."""

    def __init__(self, root, binary):
        self.dir = Path(tempfile.mkdtemp(dir=root))
        self.binary = binary
        self.manifest = {"epochs": []}

    def step(self, epoch, acts):
        for name, a in acts.items():
            np.save(self.dir / f"{name}_{epoch:08d}.npy", np.packbits(a > 0, axis=1) if self.binary else a)
        self.manifest["epochs"].append({"epoch": epoch, "metrics": {"loss": 0.5, "accuracy": 0.9}})
        tmp = self.dir / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest))
        tmp.replace(self.dir / "manifest.json")


def _row(case: str, n: int, epochs: int, samples: int, first: float, last: float | None = None) -> dict:
    """One CSV row: medians (ms) over the first and the last ``samples`` epochs or calls of a case."""
    return {"case": case, "n": n, "epochs": epochs, "samples_per_median": samples,
            "median_ms_first": round(first, 4), "median_ms_last": "" if last is None else round(last, 4)}


def interleaved(writers: dict, epochs: int, acts: dict) -> dict:
    """Time each writer's step for every epoch, alternating writers within the epoch (same machine load)."""
    times = {k: np.empty(epochs) for k in writers}
    for e in range(epochs):
        for k, w in writers.items():
            t0 = time.perf_counter()
            w.step(e, acts[k][e % len(acts[k])])
            times[k][e] = time.perf_counter() - t0
    return times


def _long_run(root, n, epochs, acts) -> list[dict]:
    """Per-1000-epoch medians of one long float32 run, page-cache advice off, then on."""
    import ibtoolkit.store.cache as cache_module

    rows, window = [], 1000
    for advice in (False, True):
        saved = cache_module.CACHE_WINDOW
        cache_module.CACHE_WINDOW = saved if advice else 1 << 62
        try:
            os.sync()
            writer = _Store(root, n, False)
            times = interleaved({"w": writer}, epochs, {"w": acts})["w"]
            writer.store.close()
            shutil.rmtree(writer.dir, ignore_errors=True)
        finally:
            cache_module.CACHE_WINDOW = saved
        meds = [float(np.median(times[i:i + window]) * 1e3) for i in range(0, epochs, window)]
        case = f"long run float32, page-cache advice {'on' if advice else 'off'} (first, last 1000)"
        print(f"{case}: median ms/epoch per {window} epochs: {' '.join(f'{m:.2f}' for m in meds)}")
        rows.append(_row(case, n, epochs, window, meds[0], meds[-1]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--long-epochs", type=int, default=14_000, help="epochs of the long-run case (0: skip)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "store.csv"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench_store_")
    print(f"store benchmark in {root}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          f"(other processes slow every figure down)")
    rows = []

    def add(case, times, with_last=True):
        early = float(np.median(times[:WINDOW]) * 1e3)
        late = float(np.median(times[-WINDOW:]) * 1e3) if with_last else None
        rows.append(_row(case, args.n, len(times), WINDOW, early, late))
        print(f"{case:32s} epochs={len(times):6d}  median ms/epoch: first {WINDOW}: {early:7.3f}"
              + (f"   last {WINDOW}: {late:7.3f}" if with_last else ""))
        return early, late

    try:
        rng = np.random.default_rng(1)
        bin_acts = [_acts(rng, args.n, True) for _ in range(4)]
        flt_acts = [_acts(rng, args.n, False) for _ in range(4)]
        writers = {"store binary (packbits)": _Store(root, args.n, True),
                   "naive binary (json manifest)": _Naive(root, True),
                   "store float32": _Store(root, args.n, False)}
        acts = {"store binary (packbits)": bin_acts, "naive binary (json manifest)": bin_acts,
                "store float32": flt_acts}
        t = interleaved(writers, args.epochs, acts)
        res = {k: add(k, v) for k, v in t.items()}
        sb, nb = res["store binary (packbits)"], res["naive binary (json manifest)"]
        print(f"ratio naive/store, binary, first {WINDOW}: {nb[0] / sb[0]:.2f}   last {WINDOW} of {args.epochs}: "
              f"{nb[1] / sb[1]:.2f}")
        print(f"ratio store last/first (cost growth over {args.epochs} epochs): binary {sb[1] / sb[0]:.2f}, "
              f"naive {nb[1] / nb[0]:.2f}")
        ty = interleaved({"store binary fsync=False": _Store(root, args.n, True),
                          "store binary fsync=True": _Store(root, args.n, True, fsync=True)},
                         WINDOW, {"store binary fsync=False": bin_acts, "store binary fsync=True": bin_acts})
        fy = {k: add(k, v, with_last=False) for k, v in ty.items()}
        print(f"ratio fsync=True / fsync=False: {fy['store binary fsync=True'][0] / fy['store binary fsync=False'][0]:.1f}")
        for key, label in (("store binary (packbits)", "binary"), ("store float32", "float32")):
            s = open_store(writers[key].dir)
            eps = s.epochs[:270]
            lay = s.manifest["layers"][0]
            block = lay["block"]
            checked, plain = [], []
            for _ in range(5):
                t0 = time.perf_counter()
                s.read("h0", eps)
                checked.append(time.perf_counter() - t0)
                t0 = time.perf_counter()  # reference: the same blocks by np.fromfile, no size or CRC checks
                stack = np.fromfile(writers[key].dir / lay["file"], dtype=block["dtype"],
                                    count=len(eps) * block["shape"][0] * block["shape"][1])
                stack = stack.reshape(len(eps), *block["shape"])
                if lay["binary"]:
                    np.unpackbits(stack, axis=2, count=lay["width"]).astype(np.float32) * 2 - 1
                plain.append(time.perf_counter() - t0)
            mc, mp = float(np.median(checked) * 1e3), float(np.median(plain) * 1e3)
            for case, med in ((f"read {label} h0 E=270 (store.read)", mc), (f"read {label} h0 E=270 (np.fromfile)", mp)):
                rows.append(_row(case, args.n, len(eps), len(checked), med))
            print(f"read {label} h0, 270 epochs: store.read {mc:.1f} ms, plain np.fromfile {mp:.1f} ms, "
                  f"ratio {mc / mp:.2f}")
        for w in writers.values():
            if isinstance(w, _Store):
                w.store.close()
        if args.long_epochs:
            rows += _long_run(root, args.n, args.long_epochs, flt_acts)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"load average at the end {os.getloadavg()[0]:.2f}; wrote {out}")


if __name__ == "__main__":
    main()
