"""The study's report: the decision rule of docs/study/protocol.md applied to one or more study planes.

    python -m experiments.study_report PLANE [PLANE ...] --out docs/study

``PLANE`` is an ``information_plane.csv`` (or ``.csv.gz``) of a study run or part; several planes (for
example the committed planes of parts run in different sessions) are concatenated, a run that appears
in more than one counted once.  ``--subsets FILE ...`` adds the planes on the training and held-out
rows (:mod:`experiments.study_subsets`).  Writes ``<out>/report.md`` (controls first, then the primary family,
then the others), ``outcomes.csv`` (one row per pair × layer), ``controls.csv`` and ``accuracy.csv``.
``experiments.run`` calls :func:`write_study_report` itself for every ``study`` preset.  The rules are
in :mod:`experiments.study_verdict`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import pathlib
import sys

import numpy as np
import pandas as pd

from experiments.report import markdown_table
from experiments.study_figures import CONTRAST_FAMILIES, EXPLORATORY_FAMILIES, plot_claim_contrasts
from experiments.study_presets import COARSE_BITS
from experiments.study_verdict import (ALPHA, MIN_DETERMINED, ROBUST, arm_accuracy, coarse_family, control_outcomes,
                                       pair_outcomes, resolution_table, samples_table, study_trajectories,
                                       summary_lines)

__all__ = ["write_study_report", "read_planes", "relabel_estimators", "main"]

_FAMILY_TEXT = {
    "1 primary": "Family 1, primary: 8-bit DNN against the ste_sign BNNs, the same estimator (`exact`) on both.",
    "1 primary (wide)": "Family 1, the wide trio (32-16-10-8-6, amendment 3): 8-bit DNN against the BNN with BN "
                        "that trains to ≥ 95 %, `exact` on both.",
    "2 quantizers": "Family 2, quantizers: 8-bit DNN (`exact`) against every BNN arm (`exact`).",
    "3 full precision": "Family 3, full precision (supporting evidence only: the estimators differ): the tanh DNN "
                        "under 30-bin binning and each kde σ² against every BNN arm under `exact`.",
    "3 full precision (resolution)": "Family 3, resolution check (its own Holm family, not part of the "
                                     "pre-registered family 3): the tanh DNN under 100-bin binning against every "
                                     "BNN arm under `exact`.",
    "3 full precision (wide)": "Family 3, the wide trio: the wide tanh DNN under 30-bin binning and each kde σ² "
                               "against the wide BNN.",
    "3 full precision (wide, resolution)": "Family 3, the wide trio, resolution check: the wide tanh DNN under "
                                           "100-bin binning against the wide BNN.",
    "4 BatchNorm": "Family 4, BatchNorm: with BN minus without, same kind of net (contrast only, no claim outcome).",
    **{coarse_family(b): f"Family 5, exploratory (not pre-registered; `study-coarse`, run after "
       f"the study): the {b}-bit tanh DNN (`exact`) against every BNN arm (`exact`), its own Holm family; its "
       f"pairs also need that DNN's own shuffled-label control (`dnn-tanh-{b}bit-shuffled`) to pass."
       for b in COARSE_BITS},
}
_COLUMNS_TEXT = (
    "Columns: `estimate` = median over the BNN's seeds of D minus the median over the DNN's seeds (D: bits "
    "I(X;T) sits below its running peak while I(T;Y) still rises, docs/phases.md), with its 95 % percentile-"
    "bootstrap interval and the permutation p-value over seeds, Holm-adjusted over the family (`p_holm`); "
    "`all:` the same with the undetermined trajectories' D included; `DNN`/`BNN`: the verdicts of the "
    "determined seeds (not `undetermined`/`failed`) and the robustness of the majority verdict (mean share of "
    f"the 96-point grid giving it). Outcome: *holds* needs controls passed, interval above 0, p_holm < {ALPHA}, "
    f"a robust (≥ {ROBUST}) BNN majority `simultaneous` and DNN majority `separate`; *contradicted*: interval "
    "below 0, BNN majority `separate` or DNN majority `simultaneous`; otherwise *undetermined*, always with fewer "
    f"than {MIN_DETERMINED} determined seeds in an arm. Rules: [protocol.md](protocol.md) sections 4–5, code: "
    "`experiments/study_verdict.py`.")
_DEVIATIONS = [
    "Training accuracy is the Keras training metric of the last epoch (running mean over its batches, training "
    "mode), not a separate inference-mode pass (section 5 asked for inference mode); `val_accuracy` is measured "
    "in inference mode on the held-out rows.",
    "The learning-rate-0 control passes when no trajectory is `simultaneous` or `separate` (its failure "
    "criterion in section 5); the reasons of the undetermined trajectories are listed beside it.",
    "Controls are read per estimator: the outcome of a pair needs the controls measured under the DNN's and the "
    "BNN's estimator to pass. `exact` has no positive control (no tanh DNN is measured with it); its controls "
    "are the BNN's learning-rate-0 and shuffled-label arms. The ReLU arm is binned with its own ranges; its "
    "outcome stands for every binning setting. The controls run on the 12-bit task and stand for the other "
    "datasets too.",
    "Group robustness in the decision rule is taken over the determined seeds only (the report's phase tables "
    "take it over all seeds).",
    f"A majority verdict of a negative or shuffled-label control counts at a layer only where at least "
    f"{MIN_DETERMINED} of its seeds are determined, the threshold section 4 sets for the pairs (section 5 states "
    "no threshold); the controls table lists the majorities left out this way.",
    "Permutation p-values of 10 against 10 seeds are exact (all 184 756 splits; `ibtoolkit.phases.contrast`); "
    "the code that ran the study drew 2000 random permutations. Exact or drawn, the smallest p the median "
    "difference of 10 against 10 seeds can give is 140/184 756 = 7.6e-4 (groups that do not overlap), which "
    "Holm's adjustment brings under 0.05 only in a family of at most 65 rows: family 3 as pre-registered "
    "(160 rows per dataset on the 12-bit task, 32 on digits) cannot hold on the 12-bit task whatever the "
    "data. This is a limit of the protocol, reported and not repaired; its contrasts are supporting evidence.",
    "Family 3 holds the settings section 4 names for it (30-bin binning, each kde σ²); the tanh DNN under "
    "100-bin binning (section 4, resolution) forms its own family, `3 full precision (resolution)`, with its "
    "own Holm adjustment, and enters the resolution table with the others.",
]


def read_planes(paths) -> pd.DataFrame:
    """Concatenate planes; a (run, layer, estimator label, epoch) row present in several is kept once."""
    frames = []
    for path in paths:
        path = pathlib.Path(path)
        if not path.is_file():
            raise ValueError(f"no plane at {path}: give the information_plane.csv(.gz) of a study run")
        frames.append(pd.read_csv(path, low_memory=False))
    if not frames:
        raise ValueError("give at least one information_plane.csv")
    plane = pd.concat(frames, ignore_index=True)
    if "samples" in plane.columns:
        plane["samples"] = plane["samples"].fillna("all")
    keys = [c for c in ("run", "layer", "estimator_label", "epoch", "samples") if c in plane.columns]
    return relabel_estimators(plane.drop_duplicates(keys, keep="last").reset_index(drop=True))


def relabel_estimators(plane: pd.DataFrame) -> pd.DataFrame:
    """One ``estimator`` label per parameter set over the whole (combined) plane.

    A part's plane names its parameter sets by the parameters that differ *within that part*
    (``binning(n_bins=30)``); combined with other parts the same label could name different sets.
    Labels are rebuilt from the estimator name and ``estimator_params`` over all rows
    (:func:`experiments.estimator_specs.distinguish_parameter_sets`)."""
    from experiments.estimator_specs import distinguish_parameter_sets

    if "estimator_label" not in plane.columns or "estimator_params" not in plane.columns:
        return plane
    plane = plane.assign(estimator=plane["estimator_label"].astype(str).str.split("(").str[0])
    return distinguish_parameter_sets(plane)


def _fmt(v, digits=3) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{v:.{digits}g}"
    return str(v)


def _outcome_table(g: pd.DataFrame) -> str:
    rows = []
    for r in g.itertuples():
        rows.append({"pair": r.pair, "layer": r.layer, "outcome": r.outcome,
                     "estimate [95 %]": f"{_fmt(r.estimate)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
                     "p_holm": _fmt(r.p_holm), "all: estimate, p_holm": f"{_fmt(r.all_estimate)}, {_fmt(r.all_p_holm)}",
                     "DNN": f"{r.counts_dnn} of {r.n_seeds_dnn} ({_fmt(r.robustness_dnn, 2)})",
                     "BNN": f"{r.counts_bnn} of {r.n_seeds_bnn} ({_fmt(r.robustness_bnn, 2)})",
                     "reason": r.reason})
    return markdown_table(pd.DataFrame(rows))


def write_study_report(out, plane: pd.DataFrame, *, sources=(), command: str = "", seed: int = 0) -> pathlib.Path:
    """Apply the decision rule to ``plane`` and write the report and its CSVs into ``out``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    traj = study_trajectories(plane)
    controls = control_outcomes(traj, seed=seed)
    outcomes = pair_outcomes(traj, controls, seed=seed)
    resolution = resolution_table(outcomes) if len(outcomes) else pd.DataFrame()
    accuracy = arm_accuracy(plane)
    controls.to_csv(out / "controls.csv", index=False)
    outcomes.to_csv(out / "outcomes.csv", index=False)
    accuracy.to_csv(out / "accuracy.csv", index=False)
    arms = plane.groupby(["dataset", "model"])["run"].nunique()
    lines = ["# The study: report", "",
             f"Generated {_dt.datetime.now().isoformat(timespec='seconds')} by `experiments.study_report` from "
             f"{len(arms)} arms ({int(arms.sum())} runs) of the study" + (f" ({', '.join(map(str, sources))})"
                                                                         if sources else "") + ".",
             f"Regenerate: `{command}`." if command else "", "",
             "The claim under test (Raj, Nayak & Kalyani 2020): DNNs fit then compress; BNNs fit and compress at "
             "once. Pre-registered rules: [protocol.md](protocol.md). Tables: [outcomes.csv](outcomes.csv) (every "
             "pair × layer), [controls.csv](controls.csv), [accuracy.csv](accuracy.csv).", "",
             "## Summary", ""] + [f"- {line}" for line in summary_lines(controls, outcomes)] + [""]
    lines += ["## 1. Controls", "",
              "Positive: the tanh DNN shows late compression (seed-median C ≥ 0.1 bit, interval above 0, majority "
              "`separate`) at some determined layer. Negative (ReLU) and shuffled labels: no layer has a "
              "`separate` or `simultaneous` majority. Learning rate 0: no trajectory is `simultaneous` or "
              "`separate`.", ""]
    lines += [markdown_table(controls) if len(controls) else "_No control arm in these planes._", ""]
    lines += ["## 2. Arms and training accuracy", "", markdown_table(accuracy.round(4)) if len(accuracy) else "", ""]
    claim_rows = outcomes[outcomes["claim"]] if len(outcomes) else outcomes
    lines += ["## 3. Contrasts and outcomes per family", "", _COLUMNS_TEXT, ""]
    for dataset in sorted(set(outcomes["dataset"])) if len(outcomes) else []:
        for families, suffix, which in ((CONTRAST_FAMILIES, "", "families 1–2"),
                                        (EXPLORATORY_FAMILIES, "-coarse", "the exploratory family 5")):
            name = f"contrast-{dataset}{suffix}"
            if plot_claim_contrasts(traj, outcomes, dataset, out / "figures" / name, families=families) is None:
                continue
            lines += [f"**{dataset}**, {which}: every seed's D (DNN blue, BNN red; hollow: undetermined; bar: "
                      "median of the determined seeds), the layer's outcome above (`experiments.study_figures`).",
                      "", f"![contrast, {dataset}, {which}](figures/{name}.png)", ""]
    if len(outcomes):
        for (fam, dataset), g in outcomes.groupby(["family", "dataset"], sort=True):
            lines += [f"### {_FAMILY_TEXT.get(fam, fam)} Dataset `{dataset}`", "", _outcome_table(g), ""]
    else:
        lines += ["_No pair of the protocol has both arms in these planes._", ""]
    lines += ["## 4. Resolution (the tanh DNN under binning 30/100 bins and kde σ²)", ""]
    if len(resolution):
        dep = resolution[resolution["resolution_dependent"]]
        lines += [f"{len(dep)} of {len(resolution)} (BNN arm, layer) comparisons change outcome with the DNN's "
                  "estimator setting (resolution-dependent).", "", markdown_table(resolution), ""]
    else:
        lines += ["_No family-3 pair in these planes._", ""]
    lines += ["## 5. Planes on the training rows and on the held-out rows", "",
              "Every run records its whole pool; the verdict above uses all N pool rows (as Shwartz-Ziv & Tishby). "
              "The same stores measured on the rows of the run's seeded training split (`train`, 80 %) and on its "
              "held-out rows (`held-out`, 20 %; `python -m experiments.study_subsets`, first estimator of each arm): "
              "verdicts of the determined seeds, N = rows of that plane (its ceiling is log2 N).", ""]
    samples = samples_table(plane)
    lines += [markdown_table(samples) if len(samples) else "_No train/held-out plane given (--subsets)._", ""]
    counts = ", ".join(f"{n} {o}" for o, n in claim_rows["outcome"].value_counts().items()) \
        if len(claim_rows) else "none (no pair was run)"
    lines += ["## 6. Deviations from the protocol", ""] + [f"- {d}" for d in _DEVIATIONS] + [""]
    lines += [f"_Outcome counts over every claim comparison: {counts}._", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.study_report", description=__doc__.splitlines()[0])
    parser.add_argument("planes", nargs="+", help="information_plane.csv(.gz) files of study runs or parts")
    parser.add_argument("--subsets", nargs="*", default=[],
                        help="planes on the training and held-out rows (python -m experiments.study_subsets)")
    parser.add_argument("--out", default="docs/study", help="directory for report.md and the CSVs (default docs/study)")
    args = parser.parse_args(argv)
    try:
        plane = read_planes([*args.planes, *args.subsets])
    except ValueError as err:
        parser.error(str(err))
    command = ("python -m experiments.study_report " + " ".join(args.planes)
               + (" --subsets " + " ".join(args.subsets) if args.subsets else "") + f" --out {args.out}")
    path = write_study_report(args.out, plane, sources=args.planes, command=command)
    print(f"study report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
