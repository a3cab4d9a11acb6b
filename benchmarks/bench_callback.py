"""Overhead of IBCallback on ``fit`` of the Shwartz-Ziv & Tishby network, recording every epoch.

Run: ``python -m benchmarks.bench_callback [--epochs 200] [--repeats 7] [--block-epochs 400] [--block-seeds 3]``

Setup (REPRODUCTION.md, DNN baseline): 12-10-7-5-4-3-2 tanh net, 12-bit dataset (train on the 80 %
split, batch 512, Adam 4e-4), analysis set = all 4096 inputs, schedule ``"all"`` (every epoch).
Each repeat fits a fresh, identically seeded model once per variant: without the callback, with it
as configured by default (XLA extraction, synchronous commits), with commits on a background writer
thread, and with the plain (non-XLA) extraction graph, in an order rotating between repeats, so all
see the same machine load; every fit pays its own tracing, the callback its taps, extractor and
store creation.  Each fit's store is deleted after it, and before each timed fit the writes are
flushed (``os.sync``) and Python's collector runs a full collection, so that no fit pays for an
earlier one: with the stores of earlier fits kept (6-7 GB of page cache by the end of a run) the
store's commit became 5-8x slower on this virtual machine (each layer's ``pwrite`` 184 us instead of
25), and a full collection of this process (TensorFlow, Keras, every model built so far) takes about
0.2 s and lands in whichever fit the allocation counters trip, adding up to 8 % to a 200-epoch fit at
random.  A fit's own writes, write-back and collections stay in its time.  Reported: the median whole-fit time, the
median of per-repeat paired ratios, and the median epoch wall time over all epochs of all repeats
(one on_epoch_begin to the next, so every callback is included; the steady state of a long run,
robust to load spikes from other processes).  Also measured, side by side in the same run:
one extraction of all taps by the callback's compiled function vs ``model.predict`` of the same
taps, and one ``ActivationStore.append``.  Prints medians and ratios and writes
``benchmarks/results/callback.csv``.

The same whole-fit comparison (without / with the default callback) also runs on the other setups
of REPRODUCTION.md for this network: the DNN with batch 256 (Saxe et al.) and the study's BNN
(``ste_sign``, ±1 inputs, batch 256, Adam 1e-3, bit-packed taps), ``setup_*`` rows.  A recorded
epoch costs about the same time in every setup, so the ratio falls as the epoch gets longer.

Second measure, robust to the machine's drift (on a shared host the plain epoch wanders between 8
and 12 ms from minute to minute): within one fit of ``--block-epochs`` epochs the callback records
ten epochs, then skips ten, and so on (an explicit schedule); the ratio of the median epoch while
recording to the median epoch while not recording is the steady-state cost of recording every
epoch, paired in time (``blocks_*`` rows), for the default and for background writes.

A diagnostic variant records with every store commit skipped (``callback_no_store_writes``):
extraction, checks and metrics only, so the table separates the extraction from the commit.
Another puts the store on ``/dev/shm`` (tmpfs, when it exists): same code, no file-system journal
or block device behind the writes.  The load average is printed before and after.
"""
from __future__ import annotations

import argparse
import csv
import gc
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

from experiments.datasets import tishby_dataset, to_pm1  # noqa: E402
from ibtoolkit.callback import IBCallback  # noqa: E402
from ibtoolkit.models import mlp  # noqa: E402
from ibtoolkit.store import ActivationStore  # noqa: E402
from ibtoolkit.taps import make_extractor, representation_taps  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "callback.csv"


def _model(seed, precision="full", lr=4e-4):
    model = mlp(seed=seed, precision=precision)
    model.compile(tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


#: The network in the setups of REPRODUCTION.md: name -> (precision, batch size, Adam learning rate).
#: The first is the one every variant runs on; the others run without and with the default callback.
CONFIGS = {
    "dnn_batch512": ("full", 512, 4e-4),     # DNN baseline (Shwartz-Ziv & Tishby), the shortest epoch
    "dnn_batch256": ("full", 256, 4e-4),     # the same with Saxe et al.'s batch size
    "bnn_batch256": ("binary", 256, 1e-3),   # the study's BNN: ste_sign, +-1 inputs, bit-packed taps
}


class _EpochTimer(tf.keras.callbacks.Callback):
    """Wall time of each epoch, from one on_epoch_begin to the next (so it includes every callback)."""

    def __init__(self):
        super().__init__()
        self.stamps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.stamps.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.stamps.append(time.perf_counter())

    def durations(self):
        return np.diff(self.stamps)[1:]  # the first epoch also traces the train function


VARIANTS = {  # name -> IBCallback keyword arguments (None: no callback)
    "without_callback": None,
    "callback_default": {},
    "callback_background_writes": {"background": True},
    "callback_plain_graph": {"jit_compile": False},
    "callback_no_store_writes": {"_skip_appends": True},
    "callback_store_on_tmpfs": {"_tmpfs": True},
}
TMPFS = Path("/dev/shm")  # RAM-backed: no journal or block-device work behind each new file


class _TimedIBCallback(IBCallback):
    """IBCallback that also times its own on_epoch_end (extraction + checks + commit or hand-off)."""

    def __init__(self, *args, _skip_appends=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.spent = []
        self._skip_appends = _skip_appends

    def _write(self, fn, *args, **kwargs):
        if self._skip_appends and getattr(fn, "__name__", "") == "append":
            return  # diagnostic variant: everything but the store commit of an epoch
        super()._write(fn, *args, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.spent.append(time.perf_counter() - t0)


def _fit_seconds(x_train, y_train, x, y, epochs, variant, workdir, seed, config="dnn_batch512"):
    """(whole fit seconds, per-epoch durations, per-epoch time inside the callback) of one fresh fit."""
    precision, batch_size, lr = CONFIGS[config]
    if precision == "binary":
        x_train, x = to_pm1(x_train), to_pm1(x)
    model = _model(seed, precision, lr)
    timer = _EpochTimer()
    callbacks = [timer]
    if VARIANTS[variant] is not None:
        kwargs = dict(VARIANTS[variant])
        root = workdir
        if kwargs.pop("_tmpfs", False):
            root = Path(tempfile.mkdtemp(prefix="bench_callback_", dir=TMPFS))
        callbacks.append(_TimedIBCallback(x, y, root / f"run-{time.perf_counter_ns()}", schedule="all", **kwargs))
    _settle()
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks, shuffle=True)
    seconds = time.perf_counter() - start
    spent = np.asarray(callbacks[-1].spent[1:]) if len(callbacks) > 1 else np.zeros(0)
    if len(callbacks) > 1:  # this fit's store only weighs on this fit (module docstring)
        store_dir = callbacks[-1].directory
        shutil.rmtree(store_dir if store_dir.parent == workdir else store_dir.parent, ignore_errors=True)
    return seconds, timer.durations(), spent


def _settle():
    """Start every timed fit from the same state: no write-back of earlier fits' stores still pending
    (``os.sync``) and a fresh garbage collector (``gc.collect``); see the module docstring."""
    os.sync()
    gc.collect()


BLOCK = 10


def _blocks(x_train, y_train, x, y, epochs, seeds, workdir, **kwargs):
    """(median ms of recording epochs, of non-recording epochs, per-fit ratios) over ``seeds`` fits of
    ``epochs`` epochs in which the callback records BLOCK epochs, skips BLOCK, ... (the first block,
    which traces, is dropped)."""
    on, off, ratios = [], [], []
    recorded = [e for e in range(1, epochs + 1) if ((e - 1) // BLOCK) % 2 == 0]  # store epoch e ends Keras epoch e-1
    for seed in range(seeds):
        model = _model(seed)
        timer = _EpochTimer()
        cb = IBCallback(x, y, workdir / f"blocks-{time.perf_counter_ns()}", schedule=recorded, **kwargs)
        _settle()
        model.fit(x_train, y_train, epochs=epochs, batch_size=512, verbose=0, callbacks=[timer, cb], shuffle=True)
        d = np.diff(timer.stamps)
        recording = (np.arange(epochs) // BLOCK) % 2 == 0
        on.append(d[recording][BLOCK:])
        off.append(d[~recording])
        ratios.append(float(np.median(on[-1]) / np.median(off[-1])))
        shutil.rmtree(cb.directory, ignore_errors=True)
    return 1e3 * float(np.median(np.concatenate(on))), 1e3 * float(np.median(np.concatenate(off))), ratios


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
    parser.add_argument("--block-epochs", type=int, default=400, help="epochs per fit of the blocks measure")
    parser.add_argument("--block-seeds", type=int, default=3, help="fits per variant of the blocks measure")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()[0]
    x_all, y_all = tishby_dataset()
    x_all = x_all.astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x_all))
    n_train = int(0.8 * len(x_all))
    x_train, y_train = x_all[order[:n_train]], y_all[order[:n_train]]
    # stores go next to the results, on the work disk, like a user's default ib_runs/
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench_callback_", dir=RESULTS.parent))
    try:
        names = [v for v in VARIANTS if v != "callback_store_on_tmpfs" or TMPFS.is_dir()]
        whole = {n: [] for n in names}
        epochs = {n: [] for n in names}
        inside = {n: [] for n in names}
        for r in range(args.repeats):
            for variant in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                t, per_epoch, spent = _fit_seconds(x_train, y_train, x_all, y_all, args.epochs, variant, workdir, seed=r)
                whole[variant].append(t)
                epochs[variant].append(per_epoch)
                inside[variant].append(spent)
                print(f"repeat {r}: {variant:28s} {t:6.2f} s, median epoch {1e3 * np.median(per_epoch):6.2f} ms",
                      flush=True)

        others = {c: {"without_callback": [], "callback_default": []} for c in list(CONFIGS)[1:]}
        for r in range(args.repeats):
            for config, runs in others.items():
                for variant in list(runs)[r % 2:] + list(runs)[:r % 2]:
                    t, _, _ = _fit_seconds(x_train, y_train, x_all, y_all, args.epochs, variant, workdir, seed=r,
                                           config=config)
                    runs[variant].append(t)
                    print(f"repeat {r}: {config} {variant:20s} {t:6.2f} s", flush=True)

        blocks = {}
        for r in range(2):  # two rounds, variants alternating, so both see the same drift
            for name, kwargs in (("default", {}), ("background_writes", {"background": True})):
                on, off, ratios = _blocks(x_train, y_train, x_all, y_all, args.block_epochs, args.block_seeds,
                                          workdir, **kwargs)
                blocks.setdefault(name, []).append((on, off, ratios))
                print(f"blocks round {r}: {name:18s} recording {on:6.2f} ms, not recording {off:6.2f} ms, "
                      f"ratio {on / off:.3f} (per fit {', '.join(f'{q:.3f}' for q in ratios)})", flush=True)

        # per-epoch pieces, side by side on one trained model
        _settle()
        model = _model(0)
        taps = representation_taps(model)
        extractor = make_extractor(model, taps, batch_size=4096)  # the default: XLA when it compiles
        plain = make_extractor(model, taps, batch_size=4096, jit_compile=False)
        prepared = extractor.prepare(x_all)
        extractor(prepared)  # trace (and compile) once
        plain(prepared)
        tap_model = tf.keras.Model(model.inputs, [t.tensor for t in taps])
        tap_model.predict(x_all, batch_size=4096, verbose=0)
        extract_ms = _median_ms(lambda: extractor(prepared), 200)
        plain_ms = _median_ms(lambda: plain(prepared), 200)
        predict_ms = _median_ms(lambda: tap_model.predict(x_all, batch_size=4096, verbose=0), 30)
        acts = extractor(prepared)
        store = ActivationStore.create(workdir / "append", inputs=x_all, labels=y_all,
                                       layers=[(t.name, t.width) for t in taps], binary=[t.binary for t in taps])
        counter = iter(range(1, 10**9))
        append_ms = _median_ms(lambda: store.append(next(counter), acts, metrics={"loss": 0.5}), 200)
        store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    base_whole = statistics.median(whole["without_callback"])
    base_epoch = 1e3 * float(np.median(np.concatenate(epochs["without_callback"])))
    rows = []
    print(f"\nfit of 12-10-7-5-4-3-2 on the 12-bit task, {args.epochs} epochs, batch 512, Adam, {args.repeats} repeats; "
          f"recording all 5 hidden layers on 4096 inputs every epoch; {os.cpu_count()} CPUs, load average "
          f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"{'variant':30s} {'fit median':>10s} {'ratio':>6s} {'paired':>6s} {'epoch median':>12s} {'ratio':>6s}")
    for name in names:
        med_whole = statistics.median(whole[name])
        paired = statistics.median(a / b for a, b in zip(whole[name], whole["without_callback"]))
        med_epoch = 1e3 * float(np.median(np.concatenate(epochs[name])))  # steady state, robust to load spikes
        rows.append((f"fit_{name}", med_whole, "s", args.epochs, args.repeats, med_whole / base_whole))
        rows.append((f"fit_{name}_paired_ratio", paired, "ratio", args.epochs, args.repeats, paired))
        rows.append((f"epoch_{name}", med_epoch, "ms", args.epochs, args.repeats, med_epoch / base_epoch))
        print(f"{name:30s} {med_whole:9.2f}s {med_whole / base_whole:6.3f} {paired:6.3f} {med_epoch:10.2f}ms "
              f"{med_epoch / base_epoch:6.3f}")
        if name != "without_callback":
            own = 1e3 * float(np.median(np.concatenate(inside[name])))
            rows.append((f"on_epoch_end_{name}", own, "ms", args.epochs, args.repeats, own / base_epoch))
            print(f"{'':30s} on_epoch_end itself: median {own:.2f} ms = {100 * own / base_epoch:.1f} % of a plain epoch")
    print(f"by setup (REPRODUCTION.md), {args.epochs} epochs, {args.repeats} repeats, without and with the default callback:")
    setups = {"dnn_batch512": {v: whole[v] for v in ("without_callback", "callback_default")}, **others}
    for config, runs in setups.items():
        base = statistics.median(runs["without_callback"])
        med = statistics.median(runs["callback_default"])
        paired = statistics.median(a / b for a, b in zip(runs["callback_default"], runs["without_callback"]))
        rows.append((f"setup_{config}_fit_without_callback", base, "s", args.epochs, args.repeats, 1.0))
        rows.append((f"setup_{config}_fit_callback_default", med, "s", args.epochs, args.repeats, med / base))
        rows.append((f"setup_{config}_paired_ratio", paired, "ratio", args.epochs, args.repeats, paired))
        print(f"{config:30s} without {base:6.2f} s, with {med:6.2f} s: ratio {med / base:.3f}, paired {paired:.3f}")
    print(f"within-fit blocks of {BLOCK} epochs, {args.block_seeds} fits x {args.block_epochs} epochs x 2 rounds:")
    for name, pairs in blocks.items():
        on = statistics.median(p[0] for p in pairs)
        off = statistics.median(p[1] for p in pairs)
        per_fit = [q for p in pairs for q in p[2]]
        ratio = statistics.median(per_fit)
        rows.append((f"blocks_{name}_recording_epoch", on, "ms", args.block_epochs, len(per_fit), ratio))
        rows.append((f"blocks_{name}_not_recording_epoch", off, "ms", args.block_epochs, len(per_fit), 1.0))
        print(f"{name:30s} recording epoch {on:6.2f} ms, not recording {off:6.2f} ms, ratio: median of "
              f"{len(per_fit)} fits {ratio:.3f}, range {min(per_fit):.3f}-{max(per_fit):.3f}")
    rows += [
        ("extract_all_taps_compiled", extract_ms, "ms", 1, 200, 1.0),
        ("extract_all_taps_plain_graph", plain_ms, "ms", 1, 200, plain_ms / extract_ms),
        ("extract_all_taps_model_predict", predict_ms, "ms", 1, 30, predict_ms / extract_ms),
        ("store_append_one_epoch", append_ms, "ms", 1, 200, ""),
        ("load_average_start", load_start, "load", "", "", ""),
        ("load_average_end", os.getloadavg()[0], "load", "", "", ""),
    ]
    print(f"per epoch, all 5 taps on 4096 inputs: compiled extractor {extract_ms:.2f} ms "
          f"(XLA: {extractor.jit_compiled}), plain graph {plain_ms:.2f} ms (x{plain_ms / extract_ms:.2f}), "
          f"model.predict {predict_ms:.2f} ms (x{predict_ms / extract_ms:.1f}); store append {append_ms:.2f} ms")
    with open(RESULTS, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "median", "unit", "epochs_or_calls", "repeats", "ratio"])
        for name, value, unit, n, reps, rat in rows:
            writer.writerow([name, f"{value:.4f}", unit, n, reps, f"{rat:.3f}" if rat != "" else ""])
    print(f"wrote {RESULTS}")
    return rows


if __name__ == "__main__":
    main()
