"""Overhead of IBCallback on ``fit`` of the Shwartz-Ziv & Tishby network, recording every epoch.

Run: ``python -m benchmarks.bench_callback [--epochs 200] [--repeats 5]``

Setup (REPRODUCTION.md, DNN baseline): 12-10-7-5-4-3-2 tanh net, 12-bit dataset (train on the 80 %
split, batch 512, Adam 4e-4), analysis set = all 4096 inputs, schedule ``"all"`` (every epoch).
Each repeat fits a fresh, identically seeded model twice, without and with the callback (order
alternating between repeats), so both see the same machine load; every fit pays its own tracing,
the callback its taps, extractor and store creation.  Also measured, side by side in the same run:
one extraction of all taps by the callback's compiled function vs ``model.predict`` of the same
taps, and one ``ActivationStore.append``.  Prints medians and ratios and writes
``benchmarks/results/callback.csv``.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import ibtoolkit  # noqa: E402, F401
import tensorflow as tf  # noqa: E402

from experiments.datasets import tishby_dataset  # noqa: E402
from ibtoolkit.callback import IBCallback  # noqa: E402
from ibtoolkit.models import mlp  # noqa: E402
from ibtoolkit.store import ActivationStore  # noqa: E402
from ibtoolkit.taps import make_extractor, representation_taps  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "callback.csv"


def _model(seed):
    model = mlp(seed=seed)
    model.compile(tf.keras.optimizers.Adam(4e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _fit_seconds(x_train, y_train, x, y, epochs, with_callback, workdir, seed):
    model = _model(seed)
    callbacks = []
    if with_callback:
        callbacks = [IBCallback(x, y, workdir / f"run-{time.perf_counter_ns()}", schedule="all")]
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=512, verbose=0, callbacks=callbacks, shuffle=True)
    return time.perf_counter() - start


def _median_ms(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    x_all, y_all = tishby_dataset()
    x_all = x_all.astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x_all))
    n_train = int(0.8 * len(x_all))
    x_train, y_train = x_all[order[:n_train]], y_all[order[:n_train]]
    # stores go next to the results (this machine's /tmp is much slower for small files than the work disk)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench_callback_", dir=RESULTS.parent))
    try:
        plain, recorded = [], []
        for r in range(args.repeats):
            variants = (False, True) if r % 2 == 0 else (True, False)
            for with_cb in variants:
                t = _fit_seconds(x_train, y_train, x_all, y_all, args.epochs, with_cb, workdir, seed=r)
                (recorded if with_cb else plain).append(t)
                print(f"repeat {r}: {'with' if with_cb else 'without'} callback {t:.2f} s", flush=True)

        # per-epoch pieces, side by side on one trained model
        model = _model(0)
        taps = representation_taps(model)
        extractor = make_extractor(model, taps, batch_size=4096)
        prepared = extractor.prepare(x_all)
        extractor(prepared)  # trace once
        tap_model = tf.keras.Model(model.inputs, [t.tensor for t in taps])
        tap_model.predict(x_all, batch_size=4096, verbose=0)
        extract_ms = _median_ms(lambda: extractor(prepared), 200)
        predict_ms = _median_ms(lambda: tap_model.predict(x_all, batch_size=4096, verbose=0), 30)
        acts = extractor(prepared)
        store = ActivationStore.create(workdir / "append", inputs=x_all, labels=y_all,
                                       layers=[(t.name, t.width) for t in taps], binary=[t.binary for t in taps])
        counter = iter(range(1, 10**9))
        append_ms = _median_ms(lambda: store.append(next(counter), acts, metrics={"loss": 0.5}), 200)
        store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    med_plain, med_rec = statistics.median(plain), statistics.median(recorded)
    ratio = med_rec / med_plain
    paired = statistics.median(r / p for r, p in zip(recorded, plain))  # same repeat, adjacent in time
    per_epoch_plain = 1e3 * med_plain / args.epochs
    per_epoch_overhead = 1e3 * (med_rec - med_plain) / args.epochs
    rows = [
        ("fit_without_callback", med_plain, "s", args.epochs, args.repeats, 1.0),
        ("fit_with_callback_every_epoch", med_rec, "s", args.epochs, args.repeats, ratio),
        ("fit_with_callback_paired_ratio", paired, "ratio", args.epochs, args.repeats, paired),
        ("fit_per_epoch_without_callback", per_epoch_plain, "ms", args.epochs, args.repeats, ""),
        ("callback_overhead_per_epoch", per_epoch_overhead, "ms", args.epochs, args.repeats, ""),
        ("extract_all_taps_compiled", extract_ms, "ms", 1, 200, 1.0),
        ("extract_all_taps_model_predict", predict_ms, "ms", 1, 30, predict_ms / extract_ms),
        ("store_append_one_epoch", append_ms, "ms", 1, 200, ""),
    ]
    print(f"\nfit of 12-10-7-5-4-3-2, {args.epochs} epochs, batch 512, medians of {args.repeats} repeats")
    print(f"  without callback      {med_plain:8.2f} s  ({per_epoch_plain:.1f} ms/epoch)")
    print(f"  with IBCallback(all)  {med_rec:8.2f} s  ratio {ratio:.3f}  (+{100 * (ratio - 1):.1f} %, "
          f"{per_epoch_overhead:+.2f} ms/epoch); median of paired ratios {paired:.3f}")
    print(f"per epoch, all 5 taps on 4096 inputs: compiled extractor {extract_ms:.2f} ms, "
          f"model.predict {predict_ms:.2f} ms (x{predict_ms / extract_ms:.1f}); store append {append_ms:.2f} ms")
    with open(RESULTS, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "median", "unit", "epochs_or_calls", "repeats", "ratio"])
        for name, value, unit, n, reps, rat in rows:
            writer.writerow([name, f"{value:.4f}", unit, n, reps, f"{rat:.3f}" if rat != "" else ""])
    print(f"wrote {RESULTS}")
    return ratio


if __name__ == "__main__":
    main()
