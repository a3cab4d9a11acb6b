"""Overhead of IBCallback on ``fit`` of the Shwartz-Ziv & Tishby network, recording every epoch.

Run: ``python -m benchmarks.bench_callback [--epochs 200] [--pairs 9] [--repeats 5] [--block-epochs 400]
[--block-seeds 3]``

Setup (the DNN baseline of Shwartz-Ziv & Tishby 2017, as in the ``paper`` preset): 12-10-7-5-4-3-2 tanh net, 12-bit dataset (train on the 80 %
split, batch 512, Adam 4e-4), analysis set = all 4096 inputs, schedule ``"all"`` (every epoch).

First measure, whole fits in adjacent pairs: ``--pairs`` times, a fresh, identically seeded model is fit
without the callback and, right before or after it (the order alternates), with the default callback;
the median of the pairs' time ratios is the cost of recording every epoch, one-off costs included.
Fits next to each other in time see the same host: on a shared virtual machine the speed of a fixed
numpy workload can jump between levels for seconds at a time, so fits minutes apart are not
comparable (and even adjacent pairs scatter: the quartiles are printed).  Each published setup of
this network gets its own pairs: the DNN
baseline (batch 512), the DNN with batch 256 (Saxe et al.) and the study's BNN (``ste_sign``, ±1
inputs, batch 256, Adam 1e-3, bit-packed taps), ``setup_*`` rows.  A recorded epoch costs about the
same time in every setup, so the ratio falls as the epoch gets longer.  Before every timed fit a
fixed numpy workload is timed too (``host_probe`` rows: its median and the ratio of its 90th to 10th
percentile), so a reader can see how steady the host was during the run.

Diagnostics, ``--repeats`` rounds: each round fits a fresh, identically seeded model once per
variant, in an order rotating between rounds: without the callback, with it as configured by default
(XLA extraction, synchronous commits), with commits on a background writer thread, with the plain
(non-XLA) extraction graph, with every store commit skipped (``callback_no_store_writes``:
extraction, checks and metrics only, which separates the extraction from the commit), without the
weights' fingerprint of each commit (``callback_no_fingerprint``, also a ``blocks_no_fingerprint`` case
and the ``weight_fingerprint_*`` rows: variable by variable, and the CRC-32 of the copy the extraction
graph makes, beside ``extract_all_taps_and_weights_compiled``: its cost side by side with the default) and with the
store on ``/dev/shm`` (tmpfs, when it exists: same code, no file-system journal or block device behind
the writes).  Reported: the median whole-fit time, the median of per-round ratios to the fit without
the callback, the median epoch wall time over all epochs of all rounds (one on_epoch_begin to the
next, so every callback is included) and the median time inside the callback's ``on_epoch_end``.
Also measured, side by side: one extraction of all taps by the callback's compiled function vs the
plain graph and ``model.predict`` of the same taps, and one ``ActivationStore.append``; and one call
of the XLA graph by the ordinary concrete-function call vs the flat entry point the extractor uses,
first at every epoch end of a fit (``extraction_call_*_in_fit``) and back to back.

Every fit pays its own tracing, the callback its taps, extractor and store creation.  Each fit's
store is deleted after it, and before each timed fit the writes are flushed (``os.sync``) and
Python's collector runs a full collection, so that no fit pays for an earlier one: with the stores
of earlier fits kept, the growing page cache slows the store's commits, and a full collection of
this process (TensorFlow, Keras, every model built so far) lands in whichever fit the allocation
counters trip (the measured sizes of both effects are in benchmarks/RESULTS.md, not here).  A fit's
own writes, write-back and collections stay in its time.

Second measure, robust to the machine's drift (on a shared host the plain epoch time wanders from
minute to minute): within one fit of ``--block-epochs`` epochs the callback records
ten epochs, then skips ten, and so on (an explicit schedule); the ratio of the median epoch while
recording to the median epoch while not recording is the steady-state cost of recording every
epoch, paired in time (``blocks_*`` rows): for the DNN baseline with the default callback and with
background writes, and for the two other setups with the default callback.

The load average is printed before and after; writes ``benchmarks/results/callback.csv``.

Full length, on request (``--full-length-pairs K``, long; nothing else runs then):
K adjacent pairs of whole fits of the DNN baseline as set up above, 8000 epochs
(``--full-length-epochs``) with batch 512, without and with the default callback recording every
epoch (a 3.8 GB store per fit, deleted after it).  One-off costs weigh 40 times less than in the
200-epoch fits, and each fit spans the host's slow and fast spells instead of falling into one.
Writes ``benchmarks/results/callback_full_length.csv``.
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
from ibtoolkit.fingerprint import WeightFingerprint, fingerprint_values  # noqa: E402
from ibtoolkit.models import mlp  # noqa: E402
from ibtoolkit.store import ActivationStore  # noqa: E402
from ibtoolkit.extractor import make_extractor  # noqa: E402
from ibtoolkit.taps import representation_taps  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "callback.csv"
RESULTS_FULL_LENGTH = RESULTS.with_name("callback_full_length.csv")


def _model(seed, precision="full", lr=4e-4):
    model = mlp(seed=seed, precision=precision)
    model.compile(tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


#: The network in its published setups: name -> (precision, batch size, Adam learning rate).
#: Each runs in adjacent pairs without and with the default callback; the diagnostic variants use the first.
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
    "callback_no_fingerprint": {"_no_fingerprint": True},
    "callback_store_on_tmpfs": {"_tmpfs": True},
}
TMPFS = Path("/dev/shm")  # RAM-backed: no journal or block-device work behind each new file


class _TimedIBCallback(IBCallback):
    """IBCallback that also times its own on_epoch_end (extraction + checks + commit or hand-off)."""

    def __init__(self, *args, _skip_appends=False, _no_fingerprint=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.spent = []
        self._skip_appends = _skip_appends
        self._fingerprint_commits = not _no_fingerprint  # diagnostic variant: commits without the weights' fingerprint

    def _write(self, fn, *args, **kwargs):
        if self._skip_appends and getattr(fn, "__name__", "") == "append":
            return  # diagnostic variant: everything but the store commit of an epoch
        super()._write(fn, *args, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.spent.append(time.perf_counter() - t0)


def _setup(config, seed, x_train, x):
    """(fresh model, training inputs, analysis inputs, batch size) of one setup of CONFIGS: a BNN gets
    its inputs mapped to ±1."""
    precision, batch_size, lr = CONFIGS[config]
    if precision == "binary":
        x_train, x = to_pm1(x_train), to_pm1(x)
    return _model(seed, precision, lr), x_train, x, batch_size


def _fit_seconds(x_train, y_train, x, y, epochs, variant, workdir, seed, config="dnn_batch512"):
    """(whole fit seconds, per-epoch durations, per-epoch time inside the callback) of one fresh fit."""
    model, x_train, x, batch_size = _setup(config, seed, x_train, x)
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


_PROBE = np.random.default_rng(0).random((160, 160))
PROBES: list[float] = []  # ms of the host probe before each timed fit


def _settle():
    """Start every timed fit from the same state: no write-back of earlier fits' stores still pending
    (``os.sync``) and a fresh garbage collector (``gc.collect``); see the module docstring.  Then time
    the host probe: 40 products of 160 x 160 matrices, the same work every time."""
    os.sync()
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(40):
        _PROBE @ _PROBE
    PROBES.append(1e3 * (time.perf_counter() - t0))


BLOCK = 10


def _blocks(x_train, y_train, x, y, epochs, seeds, workdir, config="dnn_batch512", **kwargs):
    """(median ms of recording epochs, of non-recording epochs, per-fit ratios) over ``seeds`` fits of
    ``epochs`` epochs in which the callback records BLOCK epochs, skips BLOCK, ... (the first block,
    which traces, is dropped)."""
    on, off, ratios = [], [], []
    recorded = [e for e in range(1, epochs + 1) if ((e - 1) // BLOCK) % 2 == 0]  # store epoch e ends Keras epoch e-1
    for seed in range(seeds):
        model, x_fit, x_rec, batch_size = _setup(config, seed, x_train, x)
        timer = _EpochTimer()
        cb = _TimedIBCallback(x_rec, y, workdir / f"blocks-{time.perf_counter_ns()}", schedule=recorded, **kwargs)
        _settle()
        model.fit(x_fit, y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[timer, cb],
                  shuffle=True)
        d = np.diff(timer.stamps)
        recording = (np.arange(epochs) // BLOCK) % 2 == 0
        on.append(d[recording][BLOCK:])
        off.append(d[~recording])
        ratios.append(float(np.median(on[-1]) / np.median(off[-1])))
        shutil.rmtree(cb.directory, ignore_errors=True)
    return 1e3 * float(np.median(np.concatenate(on))), 1e3 * float(np.median(np.concatenate(off))), ratios


def _call_paths_in_fit(x_train, y_train, x, epochs):
    """Median ms of one extraction call of the XLA graph by the ordinary concrete-function call and by
    the flat entry point the extractor uses (``ibtoolkit.extractor._flat_entry``): inside a fit of the DNN
    baseline, at every epoch end, each path first in every other epoch (the first call after the
    training steps is the one the callback makes; the second is warm), and back to back."""
    from ibtoolkit.extractor import _flat_entry

    model, x_fit, x_rec, batch_size = _setup("dnn_batch512", 0, x_train, x)
    extractor = make_extractor(model, representation_taps(model))
    batch = extractor.prepare(x_rec)[0]
    extractor.compile([batch])
    paths = {"concrete": extractor.trace(True), "flat": _flat_entry(extractor.trace(True))}
    first = {name: [] for name in paths}

    class _Timer(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            names = list(paths)[epoch % 2:] + list(paths)[:epoch % 2]
            for i, name in enumerate(names):
                t0 = time.perf_counter()
                paths[name](batch)
                if i == 0 and epoch >= BLOCK:
                    first[name].append(time.perf_counter() - t0)

    _settle()
    model.fit(x_fit, y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[_Timer()])
    in_fit = {name: 1e3 * float(np.median(t)) for name, t in first.items()}
    back_to_back = {name: _median_ms(lambda f=f: f(batch), 200) for name, f in paths.items()}
    return in_fit, back_to_back


def _median_ms(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _split():
    """The 12-bit task split as in the published setups (80 % train): (x_train, y_train, x_all, y_all), analysis set = all."""
    x_all, y_all = tishby_dataset()
    x_all = x_all.astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x_all))
    n_train = int(0.8 * len(x_all))
    return x_all[order[:n_train]], y_all[order[:n_train]], x_all, y_all


def _workdir() -> Path:
    """A fresh directory for the stores, next to the results on the work disk, like a user's ib_runs/."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="bench_callback_", dir=RESULTS.parent))


PAIR = ("without_callback", "callback_default")


def _pair(x_train, y_train, x, y, epochs, workdir, r, config="dnn_batch512") -> dict:
    """Pair ``r``: the fits without and with the default callback right after each other, the order
    alternating with ``r``; ``{variant: (seconds, per-epoch durations, time inside the callback)}``."""
    out = {}
    for variant in PAIR[r % 2:] + PAIR[:r % 2]:
        out[variant] = _fit_seconds(x_train, y_train, x, y, epochs, variant, workdir, seed=r, config=config)
        print(f"pair {r}: {config} {variant:20s} {out[variant][0]:7.2f} s, median epoch "
              f"{1e3 * np.median(out[variant][1]):.2f} ms", flush=True)
    return out


def _full_length(epochs, n_pairs):
    """Adjacent pairs of full-length fits of the DNN baseline, without and with the default callback."""
    x_train, y_train, x_all, y_all = _split()
    workdir = _workdir()
    runs = {v: [] for v in PAIR}
    try:
        for r in range(n_pairs):
            for variant, (t, per_epoch, spent) in _pair(x_train, y_train, x_all, y_all, epochs, workdir, r).items():
                runs[variant].append((t, 1e3 * float(np.median(per_epoch)),
                                      1e3 * float(np.median(spent)) if len(spent) else 0.0))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = [a[0] / b[0] for a, b in zip(runs["callback_default"], runs["without_callback"])]
    base = statistics.median(t for t, _, _ in runs["without_callback"])
    med = statistics.median(t for t, _, _ in runs["callback_default"])
    own = statistics.median(o for _, _, o in runs["callback_default"])
    probe = statistics.median(PROBES)
    print(f"\nDNN baseline, batch 512, {epochs} epochs, every epoch recorded, {n_pairs} adjacent pairs: without "
          f"{base:.1f} s, with {med:.1f} s; paired ratios {', '.join(f'{q:.3f}' for q in ratios)} (median "
          f"{statistics.median(ratios):.3f}); on_epoch_end median {own:.2f} ms; host probe median {probe:.1f} ms")
    rows = [("full_length_fit_without_callback", base, "s", epochs, n_pairs, 1.0),
            ("full_length_fit_callback_default", med, "s", epochs, n_pairs, med / base),
            ("full_length_paired_ratio", statistics.median(ratios), "ratio", epochs, n_pairs,
             statistics.median(ratios)),
            ("full_length_on_epoch_end", own, "ms", epochs, n_pairs, "")]
    rows += [(f"full_length_pair_{i}_ratio", q, "ratio", epochs, 1, q) for i, q in enumerate(ratios)]
    _write_csv(RESULTS_FULL_LENGTH, rows)
    return rows


def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "median", "unit", "epochs_or_calls", "repeats", "ratio"])
        for name, value, unit, n, reps, rat in rows:
            writer.writerow([name, f"{value:.4f}", unit, n, reps, f"{rat:.3f}" if rat != "" else ""])
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=9, help="adjacent without/with pairs per setup")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the diagnostic variants")
    parser.add_argument("--block-epochs", type=int, default=400, help="epochs per fit of the blocks measure")
    parser.add_argument("--block-seeds", type=int, default=3, help="fits per variant of the blocks measure")
    parser.add_argument("--full-length-pairs", type=int, default=0,
                        help="run only the full-length measure, with this many pairs (module docstring)")
    parser.add_argument("--full-length-epochs", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.full_length_pairs:
        return _full_length(args.full_length_epochs, args.full_length_pairs)

    load_start = os.getloadavg()[0]
    x_train, y_train, x_all, y_all = _split()
    workdir = _workdir()
    try:
        pairs = {c: {v: [] for v in PAIR} for c in CONFIGS}
        for r in range(args.pairs):  # round r: one pair per setup, so every setup sees the same drift
            for config, runs in pairs.items():
                for variant, (t, _, _) in _pair(x_train, y_train, x_all, y_all, args.epochs, workdir, r,
                                                config).items():
                    runs[variant].append(t)

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
                print(f"round {r}: {variant:28s} {t:6.2f} s, median epoch {1e3 * np.median(per_epoch):6.2f} ms",
                      flush=True)

        blocks = {}
        block_cases = [("default", {}), ("background_writes", {"background": True}),  # DNN batch 512
                       ("no_fingerprint", {"_no_fingerprint": True})]
        block_cases += [(f"{config}_default", {"config": config}) for config in list(CONFIGS)[1:]]
        for r in range(2):  # two rounds, cases alternating, so all see the same drift
            for name, kwargs in block_cases:
                on, off, ratios = _blocks(x_train, y_train, x_all, y_all, args.block_epochs, args.block_seeds,
                                          workdir, **kwargs)
                blocks.setdefault(name, []).append((on, off, ratios))
                print(f"blocks round {r}: {name:18s} recording {on:6.2f} ms, not recording {off:6.2f} ms, "
                      f"ratio {on / off:.3f} (per fit {', '.join(f'{q:.3f}' for q in ratios)})", flush=True)

        call_in_fit, call_back_to_back = _call_paths_in_fit(x_train, y_train, x_all, args.block_epochs)

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
        fingerprint = WeightFingerprint(model)
        fingerprint_ms = _median_ms(fingerprint, 200)
        fused = make_extractor(model, taps, batch_size=4096, weights=model.weights)
        fused(prepared)
        fused_ms = _median_ms(lambda: fused(prepared), 200)
        hash_ms = _median_ms(lambda: fingerprint_values(fused.weights), 200)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    base_whole = statistics.median(whole["without_callback"])
    base_epoch = 1e3 * float(np.median(np.concatenate(epochs["without_callback"])))
    rows = []
    probe = statistics.median(PROBES)
    spread = float(np.percentile(PROBES, 90) / np.percentile(PROBES, 10))
    print(f"\nfit of 12-10-7-5-4-3-2 on the 12-bit task, {args.epochs} epochs, recording all 5 hidden layers on "
          f"4096 inputs every epoch; {os.cpu_count()} CPUs, load average {load_start:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end; host probe before each fit: median {probe:.1f} ms, "
          f"90th/10th percentile {spread:.2f}")
    print(f"whole fits in {args.pairs} adjacent pairs per published setup, without and with the default "
          f"callback:")
    for config, runs in pairs.items():
        base = statistics.median(runs["without_callback"])
        med = statistics.median(runs["callback_default"])
        ratios = [a / b for a, b in zip(runs["callback_default"], runs["without_callback"])]
        paired = statistics.median(ratios)
        q1, q3 = np.percentile(ratios, [25, 75])
        rows.append((f"setup_{config}_fit_without_callback", base, "s", args.epochs, args.pairs, 1.0))
        rows.append((f"setup_{config}_fit_callback_default", med, "s", args.epochs, args.pairs, med / base))
        rows.append((f"setup_{config}_paired_ratio", paired, "ratio", args.epochs, args.pairs, paired))
        print(f"{config:30s} without {base:6.2f} s, with {med:6.2f} s: paired ratio median {paired:.3f} "
              f"(quartiles {q1:.3f}-{q3:.3f}, range {min(ratios):.3f}-{max(ratios):.3f})")
    print(f"diagnostics, DNN batch 512, {args.repeats} rounds:")
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
    print(f"within-fit blocks of {BLOCK} epochs, {args.block_seeds} fits x {args.block_epochs} epochs x 2 rounds "
          f"(default and background_writes: DNN batch 512):")
    for name, rounds in blocks.items():
        on = statistics.median(p[0] for p in rounds)
        off = statistics.median(p[1] for p in rounds)
        per_fit = [q for p in rounds for q in p[2]]
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
        ("weight_fingerprint_variable_by_variable", fingerprint_ms, "ms", 1, 200, fingerprint_ms / extract_ms),
        ("extract_all_taps_and_weights_compiled", fused_ms, "ms", 1, 200, fused_ms / extract_ms),
        ("weight_fingerprint_of_the_extracted_copy", hash_ms, "ms", 1, 200, hash_ms / extract_ms),
        ("extraction_call_concrete_in_fit", call_in_fit["concrete"], "ms", args.block_epochs, 1, 1.0),
        ("extraction_call_flat_in_fit", call_in_fit["flat"], "ms", args.block_epochs, 1,
         call_in_fit["flat"] / call_in_fit["concrete"]),
        ("extraction_call_concrete_back_to_back", call_back_to_back["concrete"], "ms", 1, 200, 1.0),
        ("extraction_call_flat_back_to_back", call_back_to_back["flat"], "ms", 1, 200,
         call_back_to_back["flat"] / call_back_to_back["concrete"]),
        ("host_probe", probe, "ms", 40, len(PROBES), spread),
        ("load_average_start", load_start, "load", "", "", ""),
        ("load_average_end", os.getloadavg()[0], "load", "", "", ""),
    ]
    print(f"per epoch, all 5 taps on 4096 inputs: compiled extractor {extract_ms:.2f} ms "
          f"(XLA: {extractor.jit_compiled}), plain graph {plain_ms:.2f} ms (x{plain_ms / extract_ms:.2f}), "
          f"model.predict {predict_ms:.2f} ms (x{predict_ms / extract_ms:.1f}); store append {append_ms:.2f} ms; "
          f"weight fingerprint variable by variable {fingerprint_ms:.3f} ms, extraction with the weights "
          f"{fused_ms:.2f} ms + CRC-32 of that copy {hash_ms:.3f} ms")
    print(f"one XLA extraction call, concrete-function call vs flat entry point: first call at an epoch end "
          f"inside fit {call_in_fit['concrete']:.3f} vs {call_in_fit['flat']:.3f} ms, back to back "
          f"{call_back_to_back['concrete']:.3f} vs {call_back_to_back['flat']:.3f} ms")
    _write_csv(RESULTS, rows)
    return rows


if __name__ == "__main__":
    main()
