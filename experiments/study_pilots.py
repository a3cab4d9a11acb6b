"""Pilots of the study (issue 19): single-seed runs that decide settings before the study is run.

``python -m experiments.study_pilots positive --out results/pilots/positive [--epochs 8000 --lr 4e-4]``
    The positive control: the tanh DNN of Shwartz-Ziv & Tishby (2017) / Saxe et al. (2018) on the 12-bit
    task (12-10-7-5-4-3-2, Adam, batch 256), binning with 30 bins on [-1, 1], trained through
    :func:`experiments.run.run_experiment` (resumable: ``--resume`` reuses a complete store).  Writes
    ``trajectories.csv`` (I(X;T), I(T;Y) per layer and recorded epoch) and ``summary.csv`` (per layer:
    e_peak = epoch of the largest I(X;T), the compression C = I(X;T)(e_peak) - I(X;T)(end), the epoch at
    which I(T;Y) reaches 90 % of its rise, and the share of recorded epochs at log2 N).

``python -m experiments.study_pilots bnn --out results/pilots/bnn --quantizer ste_sign --batch-norm ...``
    Does the BNN train (``--precision full`` / ``quantized``: its tanh / 8-bit tanh twin)?  Builds the study's BNN with :func:`experiments.training.build_model`, fits it
    without recording, and prints the training accuracy measured in inference mode (``model.evaluate``
    on the training rows: BatchNorm with its moving statistics, the mode the taps record in), next to
    Keras' running training-mode accuracy of the last epoch and the test accuracy.  Appends one row to
    ``<out>/bnn_pilots.csv``.

``python -m experiments.study_pilots summary --out results/pilots/study-matched-1seed``
    The same per-layer summary for every (model, estimator) of a finished ``experiments.run`` directory,
    with each model's last recorded accuracies, into ``<out>/summary.csv``.

All are pilots, not the study: one seed, settings given on the command line and stated in every row.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import sys
import time

import numpy as np

__all__ = ["positive_control_preset", "summarise_positive", "centre_of_mass", "main"]

TISHBY_WIDTHS = [10, 7, 5, 4, 3]


def positive_control_preset(*, epochs=8000, lr=4e-4, batch_size=256, n_points=160, seed=0,
                            test_fraction=0.2, n_bins=30, optimizer="adam") -> dict:
    """The positive-control preset (one tanh DNN, one seed, binning only)."""
    binning = {"name": "binning", "n_bins": int(n_bins), "value_range": [-1.0, 1.0]}
    return {
        "name": "pilot-positive", "description": "pilot of the positive control",
        "source": {"all": "Shwartz-Ziv & Tishby (2017); Saxe et al. (2018): see docs/study/pilots.md"},
        "datasets": ["tishby"], "dataset_options": {},
        "split": {"test_fraction": float(test_fraction), "seed": 0}, "analysis": "all", "seeds": [int(seed)],
        "models": [{"name": "dnn-tanh", "precision": "full", "variant": "tanh", "activation": "tanh",
                    "batch_norm": False, "widths": list(TISHBY_WIDTHS), "optimizer": optimizer, "lr": float(lr),
                    "batch_size": int(batch_size), "epochs": int(epochs), "schedule": "log",
                    "n_points": int(n_points), "estimators": [binning]}],
    }


def centre_of_mass(epochs, values, *, rising: bool) -> float:
    """Log-epoch centre of mass of the rises (``rising``) or the falls of a trajectory.

    With u_i = log10(e_i + 1) and the increments d_i = v_i - v_{i-1} between consecutive recorded
    epochs, the weights are w_i = max(d_i, 0) (rises) or max(-d_i, 0) (falls), each placed at the
    midpoint (u_{i-1} + u_i) / 2; the centre is sum_i w_i (u_{i-1} + u_i)/2 / sum_i w_i (NaN if no
    weight).  The pilot's own version of the statistic of issue 16 (raw, unsmoothed values).
    """
    u = np.log10(np.asarray(epochs, float) + 1.0)
    d = np.diff(np.asarray(values, float))
    w = np.clip(d if rising else -d, 0.0, None)
    if w.sum() <= 0:
        return math.nan
    return float(np.sum(w * 0.5 * (u[1:] + u[:-1])) / w.sum())


def summarise_positive(plane, by=("layer",)) -> list[dict]:
    """Per layer (per ``by`` group): e_peak, I(X;T) at peak and end, compression, e_fit (90 % of the
    I(T;Y) rise), the centres of mass and their difference delta, and the share of epochs at the ceiling."""
    rows = []
    for key, g in plane.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values("epoch")
        e = g["epoch"].to_numpy()
        ixt = g["ixt"].to_numpy(float)
        ity = g["ity"].to_numpy(float)
        ceiling = float(g["ixt_ceiling"].iloc[0])
        peak = int(np.argmax(ixt))
        rise = ity.max() - ity[0]
        fit = int(np.argmax(ity >= ity[0] + 0.9 * rise)) if rise > 0 else 0
        centre_fit, centre_comp = centre_of_mass(e, ity, rising=True), centre_of_mass(e, ixt, rising=False)
        rows.append({**dict(zip(by, key)), "centre_fit": round(centre_fit, 3), "centre_compression": round(centre_comp, 3),
                     "delta": round(centre_comp - centre_fit, 3), "e_peak": int(e[peak]), "I_XT_peak": round(float(ixt[peak]), 4),
                     "I_XT_end": round(float(ixt[-1]), 4), "compression_bits": round(float(ixt[peak] - ixt[-1]), 4),
                     "e_fit90": int(e[fit]), "I_TY_end": round(float(ity[-1]), 4),
                     "share_at_ceiling": round(float(np.mean(ixt >= ceiling - 0.01)), 3)})
    return rows


def _write_csv(path: pathlib.Path, rows: list[dict], append: bool = False) -> None:
    """Write ``rows``; with ``append``, after the rows already in ``path`` (columns are the union)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = []
    if append and path.exists():
        with open(path, newline="") as fh:
            old = list(csv.DictReader(fh))
    fields = list(dict.fromkeys(k for row in old + rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(old + rows)


def _positive(args) -> int:
    from experiments.run import run_experiment

    preset = positive_control_preset(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                     n_points=args.n_points, seed=args.seed, test_fraction=args.test_fraction,
                                     n_bins=args.n_bins, optimizer=args.optimizer)
    out = pathlib.Path(args.out)
    t0 = time.perf_counter()
    result = run_experiment(preset, out, resume=True, progress=False, figures=True)
    seconds = time.perf_counter() - t0
    plane = result["plane"]
    cols = [c for c in ("run", "layer", "epoch", "ixt", "ity", "accuracy", "val_accuracy") if c in plane]
    plane[cols].to_csv(out / "trajectories.csv", index=False)
    rows = summarise_positive(plane)
    _write_csv(out / "summary.csv", rows)
    print(json.dumps({"settings": preset["models"][0], "seconds": round(seconds, 1)}, default=str))
    for row in rows:
        print(row)
    if result["phases"] is not None:
        print(result["phases"].to_string())
    return 1 if result["failures"] else 0


def _bnn(args) -> int:
    import ibtoolkit  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    from experiments.training import set_seeds, build_model, prepare_data

    quantizer = args.quantizer
    model_cfg = {"name": "pilot-bnn", "precision": args.precision, "variant": quantizer,
                 "activation": "tanh", "bits": 8,
                 "input_quantizer": "ste_sign" if quantizer == "magnitude_aware_sign" else quantizer,
                 "kernel_quantizer": quantizer, "batch_norm": bool(args.batch_norm),
                 "widths": [int(w) for w in args.widths.split(",")], "optimizer": args.optimizer,
                 "lr": float(args.lr), "batch_size": int(args.batch_size), "epochs": int(args.epochs),
                 "first_layer": args.first_layer}
    run_cfg = {"run_id": "pilot", "dataset": args.dataset, "dataset_options": {},
               "split": {"test_fraction": 0.2, "seed": 0}, "analysis": "all", "seed": int(args.seed),
               "model": model_cfg}
    set_seeds(int(args.seed), None)
    data = prepare_data(run_cfg)
    n_classes = int(data["y_train"].max() + 1)
    model = build_model(model_cfg, input_dim=data["x_train"].shape[1], n_classes=n_classes, seed=int(args.seed))
    t0 = time.perf_counter()
    checkpoints = sorted({int(e) for e in args.report_at.split(",") if e} | {int(args.epochs)})
    done, rows = 0, []
    for stop in checkpoints:
        hist = model.fit(data["x_train"], data["y_train"], epochs=stop, initial_epoch=done,
                         batch_size=int(args.batch_size), shuffle=True, verbose=0)
        done = stop
        train_acc = float(model.evaluate(data["x_train"], data["y_train"], verbose=0, batch_size=4096)[1])
        test_acc = float(model.evaluate(data["x_test"], data["y_test"], verbose=0, batch_size=4096)[1])
        row = {"dataset": args.dataset, "precision": args.precision, "quantizer": quantizer, "batch_norm": bool(args.batch_norm),
               "first_layer": args.first_layer, "widths": args.widths, "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size,
               "seed": args.seed, "epoch": stop, "train_acc_inference": round(train_acc, 4),
               "train_acc_running": round(float(hist.history["accuracy"][-1]), 4),
               "test_acc": round(test_acc, 4), "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(row, flush=True)
    _write_csv(pathlib.Path(args.out) / "bnn_pilots.csv", rows, append=True)
    del tf
    return 0


def _summary(args) -> int:
    from ibtoolkit import read_plane

    out = pathlib.Path(args.out)
    plane = read_plane(out / "information_plane.csv")
    plane = plane[plane["status"] == "ok"]
    rows = summarise_positive(plane, by=("model", "estimator_label", "layer"))
    last = plane.sort_values("epoch").groupby("model")[["accuracy", "val_accuracy"]].last()
    for row in rows:
        row["accuracy_end"] = round(float(last.loc[row["model"], "accuracy"]), 4)
        row["val_accuracy_end"] = round(float(last.loc[row["model"], "val_accuracy"]), 4)
    _write_csv(out / "summary.csv", rows)
    print(f"{len(rows)} rows -> {out / 'summary.csv'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.study_pilots", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    pos = sub.add_parser("positive", help="the tanh DNN positive control under binning")
    pos.add_argument("--out", required=True)
    pos.add_argument("--epochs", type=int, default=8000)
    pos.add_argument("--lr", type=float, default=4e-4)
    pos.add_argument("--batch-size", type=int, default=256)
    pos.add_argument("--n-points", type=int, default=160)
    pos.add_argument("--seed", type=int, default=0)
    pos.add_argument("--test-fraction", type=float, default=0.2)
    pos.add_argument("--n-bins", type=int, default=30)
    pos.add_argument("--optimizer", default="adam")
    bnn = sub.add_parser("bnn", help="does the BNN reach >= 95 %% training accuracy?")
    bnn.add_argument("--out", required=True)
    bnn.add_argument("--dataset", default="tishby")
    bnn.add_argument("--quantizer", default="ste_sign")
    bnn.add_argument("--batch-norm", action="store_true")
    bnn.add_argument("--precision", choices=("binary", "full", "quantized"), default="binary",
                     help="binary (default), or the tanh DNN twin (full) / its 8-bit version (quantized)")
    bnn.add_argument("--first-layer", choices=("binary", "full"), default="binary",
                     help="precision of the first layer's weights (it reads the +-1 inputs either way)")
    bnn.add_argument("--widths", default=",".join(map(str, TISHBY_WIDTHS)))
    bnn.add_argument("--optimizer", default="adam")
    bnn.add_argument("--lr", type=float, default=1e-3)
    bnn.add_argument("--batch-size", type=int, default=256)
    bnn.add_argument("--epochs", type=int, default=2000)
    bnn.add_argument("--report-at", default="100,500,1000", help="comma list of epochs to evaluate at")
    bnn.add_argument("--seed", type=int, default=0)
    summ = sub.add_parser("summary", help="per model, estimator and layer of a finished run directory")
    summ.add_argument("--out", required=True, help="an experiments.run output directory")
    args = p.parse_args(argv)
    return {"positive": _positive, "bnn": _bnn, "summary": _summary}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
