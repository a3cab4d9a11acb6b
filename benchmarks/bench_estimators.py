"""Speed of the built-in estimators, side by side with the anchors' straightforward algorithms.

Run: ``python -m benchmarks.bench_estimators [--quick] [--out benchmarks/results/estimators.csv]``

Case "12bit": N = 4096 inputs (all 12-bit patterns), layer widths 10, 7, 5, 4, 3 of the
Shwartz-Ziv & Tishby net.  Every "epoch" draws a fresh random tanh network (truncated-normal-like
weights, std 1/sqrt(fan_in)); ``kde``, ``ksg`` and ``binning`` see the tanh codes, ``exact`` their
signs (±1, as a BNN layer); case "12bit-sign": ``kde`` on those signs as float32 ±1 (at most
2^width distinct rows, which ``kde`` sums over with multiplicities; one reference call per width).
One estimator instance serves every layer × epoch (warmed up once, as in a real run).  Case
"wide": N = 10 000 × width 1024 for ``binning`` and ``exact`` (int8 ±1 codes); case "wide-f32":
``exact`` on the same codes as float32 ±1, which is what ``ActivationStore.read`` returns for a
binary layer (so what the information plane passes).

Each (layer, epoch) call is timed once per repeat; the table gives the median and inter-quartile
range of the wall-clock time per call (and the median CPU time over all threads, which shows how much
of a slow figure is other processes' load) over all calls of a width, the same for the reference algorithm
(:mod:`benchmarks.reference`) timed in the same run, their ratio, and whether the issue-2 target is
met.  Results go to a CSV (one row per estimator × case × width).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import time
from pathlib import Path

import numpy as np

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow loads)

from . import reference

WIDTHS = (10, 7, 5, 4, 3)
TARGET_MS = {("12bit", "exact"): 0.2, ("12bit", "binning"): 1.0, ("12bit", "kde"): 40.0, ("12bit-sign", "kde"): 40.0,
             ("12bit", "ksg"): 40.0, ("wide", "binning"): 60.0, ("wide", "exact"): 5.0,
             ("wide-f32", "exact"): 5.0}
REFERENCES = {"exact": reference.unique_rows_information, "binning": reference.binning_reference,
              "kde": reference.kde_reference, "ksg": reference.ksg_reference}


def _twelve_bit_inputs() -> np.ndarray:
    return ((np.arange(4096)[:, None] >> np.arange(12)) & 1).astype(np.float32)


def _random_net_codes(x: np.ndarray, widths, rng) -> list[np.ndarray]:
    """Tanh activations of every layer of a random net on x (weights std 1/sqrt(fan_in))."""
    codes, h = [], 2.0 * x - 1.0
    for w in widths:
        weights = rng.normal(size=(h.shape[1], w)) / math.sqrt(h.shape[1])
        h = np.tanh(3.0 * h @ weights).astype(np.float32)
        codes.append(h)
    return codes


def _layer_input(name: str, t: np.ndarray, codes_dtype=np.int8) -> np.ndarray:
    return np.where(t >= 0, 1, -1).astype(codes_dtype) if name == "exact" else t


def _time(fn, *args, cpu=None) -> float:
    """Wall-clock milliseconds of one call; its CPU milliseconds (all threads) go to ``cpu``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn(*args)
    if cpu is not None:
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return (time.perf_counter() - start) * 1e3


def _stats(times) -> tuple[float, float]:
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return float(med), float(q3 - q1)


def _get(name: str):
    try:
        return ibtoolkit.get_estimator(name)
    except ValueError as exc:  # e.g. another engineer's module not merged yet: say so, go on
        print(f"  ! estimator {name!r} unavailable, skipped: {exc}")
        return None


def bench_case(case, names, x, y, layers_by_epoch, repeats, ref_calls, codes_dtype=np.int8):
    """Time each estimator on every (epoch, layer); the reference on the first ``ref_calls`` epochs."""
    rows = []
    for name in names:
        est = _get(name)
        if est is None:
            continue
        ref = REFERENCES[name]
        prepared = [[_layer_input(name, t, codes_dtype) for t in layers] for layers in layers_by_epoch]
        first = prepared[0][0]
        est.estimate(x, first, y)        # warm-up: traces tf.functions, keys x
        ref(x, first, y)
        widths = [t.shape[1] for t in layers_by_epoch[0]]
        for li, width in enumerate(widths):
            own, own_cpu, refs = [], [], []
            for _ in range(repeats):
                for layers in prepared:
                    own.append(_time(est.estimate, x, layers[li], y, cpu=own_cpu))
            for layers in prepared[:ref_calls]:
                refs.append(_time(ref, x, layers[li], y))
            med, iqr = _stats(own)
            rmed, riqr = _stats(refs)
            target = TARGET_MS.get((case, name))
            rows.append({"case": case, "estimator": name, "input": str(first.dtype), "n": x.shape[0], "width": width,
                         "median_ms": round(med, 4), "iqr_ms": round(iqr, 4), "calls": len(own),
                         "cpu_median_ms": round(float(np.median(own_cpu)), 4),
                         "reference_median_ms": round(rmed, 3), "reference_iqr_ms": round(riqr, 3),
                         "reference_calls": len(refs), "speedup": round(rmed / med, 1),
                         "target_ms": target, "meets_target": None if target is None else bool(med <= target),
                         "load1": round(os.getloadavg()[0], 2)})
            r = rows[-1]
            print(f"  {name:8s} N={x.shape[0]:6d} d={width:5d}  {med:9.3f} ms (IQR {iqr:7.3f}, "
                  f"cpu {r['cpu_median_ms']:8.3f})   "
                  f"reference {rmed:10.3f} ms   x{r['speedup']:<8}  target {target} ms: "
                  f"{'met' if r['meets_target'] else 'MISSED'}  (load {r['load1']})")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats (same sizes)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "estimators.csv"))
    args = parser.parse_args(argv)
    epochs, repeats, ref_calls = (2, 2, 1) if args.quick else (5, 5, 2)
    rng = np.random.default_rng(0)
    print(f"ibtoolkit estimator benchmark ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}: other processes slow every figure down)")

    x = _twelve_bit_inputs()
    y = (rng.random(4096) < 2118 / 4096).astype(np.int64)
    layers_by_epoch = [_random_net_codes(x, WIDTHS, rng) for _ in range(epochs)]
    print("case 12bit: N = 4096, per layer and epoch")
    rows = bench_case("12bit", ["exact", "binning", "kde", "ksg"], x, y, layers_by_epoch, repeats, ref_calls)
    print("case 12bit-sign: kde on the signs of the same layers (float32 ±1: a BNN layer as a store returns it)")
    signs = [[np.where(t >= 0, 1.0, -1.0).astype(np.float32) for t in layers] for layers in layers_by_epoch]
    rows += bench_case("12bit-sign", ["kde"], x, y, signs, repeats, 1)

    xw = rng.normal(size=(10_000, 20)).astype(np.float32)
    yw = rng.integers(0, 10, 10_000)
    wide = [[np.tanh(xw @ rng.normal(size=(20, 1024)).astype(np.float32))] for _ in range(max(1, epochs // 2))]
    print("case wide: N = 10000, width 1024")
    rows += bench_case("wide", ["binning", "exact"], xw, yw, wide, repeats, ref_calls)
    print("case wide-f32: N = 10000, width 1024, exact on float32 ±1 (as read back from a store)")
    rows += bench_case("wide-f32", ["exact"], xw, yw, wide, repeats, ref_calls, codes_dtype=np.float32)

    if not rows:
        raise SystemExit("no estimator could be benchmarked (see the messages above)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    missed = [f"{r['estimator']}@{r['case']}/d={r['width']}" for r in rows if r["meets_target"] is False]
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"wrote {out}; targets missed: {', '.join(missed) if missed else 'none'}")


if __name__ == "__main__":
    main()
