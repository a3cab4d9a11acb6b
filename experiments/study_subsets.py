"""Planes of the study's runs on their training rows and on their held-out rows (protocol section 2.3).

    python -m experiments.study_subsets results/study [--all-estimators] [--out FILE]

Every study run records its whole pool; this computes, for every complete store under
``<dir>/runs/``, the information plane on the rows of the run's seeded training split and on its
held-out rows (:func:`experiments.analysis_sets.subset_plane`), with the first estimator of the arm
in the ``study`` preset (``exact`` for discrete arms, 30-bin binning for the tanh DNNs, 100-bin binning
on the run-wide range for the ReLU DNN; ``--all-estimators``: every estimator of the arm).  Writes
``<dir>/information_plane_subsets.csv.gz`` with a ``samples`` column (``train`` or ``held-out``);
``n_samples`` and ``ixt_ceiling`` are those of the subset.  :mod:`experiments.study_report` reads it
with ``--subsets``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import pandas as pd

__all__ = ["study_subset_planes", "main"]


def _arm_estimators(all_estimators: bool) -> dict:
    from experiments.presets import get_preset

    arms = {}
    for model in get_preset("study")["models"]:
        specs = model["estimators"] if all_estimators else model["estimators"][:1]
        for dataset in model["datasets"]:
            arms[(dataset, model["name"])] = specs
    return arms


def study_subset_planes(directory, *, all_estimators: bool = False, progress: bool = True) -> pd.DataFrame:
    """The train and held-out planes of every complete store under ``directory/runs``."""
    from tqdm.auto import tqdm

    from experiments.analysis_sets import analysis_rows, subset_plane
    from ibtoolkit import open_store

    runs = sorted(p for p in (pathlib.Path(directory) / "runs").glob("*") if (p / "manifest.json").is_file())
    if not runs:
        raise ValueError(f"no store under {pathlib.Path(directory) / 'runs'}: give the --out directory of a study run")
    arms = _arm_estimators(all_estimators)
    frames = []
    for path in tqdm(runs, disable=not progress, desc="train/held-out planes", unit="run"):
        store = open_store(path)
        if store.status != "complete":
            continue
        meta = store.run
        key = (meta["dataset"], meta["model"])
        if key not in arms:
            continue
        config = {**meta["training"], "run_id": meta["run_id"]}
        rows = analysis_rows(config, len(store.labels))
        for samples in ("train", "held-out"):
            frames.append(subset_plane(store, arms[key], rows[samples], samples, progress=False))
    if not frames:
        raise ValueError(f"no complete store of a study arm under {directory}")
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.study_subsets", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="output directory of a study run (holds runs/)")
    parser.add_argument("--all-estimators", action="store_true", help="every estimator of each arm (kde is slow)")
    parser.add_argument("--out", help="CSV to write (default <directory>/information_plane_subsets.csv.gz)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        plane = study_subset_planes(args.directory, all_estimators=args.all_estimators, progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    out = pathlib.Path(args.out or pathlib.Path(args.directory) / "information_plane_subsets.csv.gz")
    plane.to_csv(out, index=False)
    print(f"train/held-out planes: {out} ({plane['run'].nunique()} runs, {len(plane)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
