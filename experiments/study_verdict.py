r"""The study's decision rule (docs/study/protocol.md, sections 4 and 5) applied to a study plane.

Input: the tidy information-plane table of study runs (``information_plane.csv`` of ``--preset study``
or of any of its parts, several concatenated).  Every trajectory (run × layer × estimator) is analysed
once by :func:`ibtoolkit.phases.trajectory_phases` (verdict, reason, the robustness shares over the
specification grid, the compression C and the statistic D); everything below is computed from that
trajectory table.

**Determined seeds** of an (arm, estimator, layer): those whose verdict is not ``undetermined`` or
``failed``.  The **majority verdict** is the verdict of more than half of them (none on a tie), its
**robustness** the mean over those seeds of the share of the 96-point grid giving that verdict (the
group robustness of :func:`ibtoolkit.phases.phase_table` restricted to the determined seeds).

**Controls** (section 5), per estimator E, on the 12-bit task:

* *positive* (``dnn-tanh``): at some layer where more than half of the seeds are determined, the
  seed-median compression :math:`\operatorname{median}_s C_s \ge 0.1` bit with its 95 % percentile
  bootstrap interval above 0, and ``separate`` the majority verdict;
* *negative* (``dnn-relu``): no layer has ``separate`` or ``simultaneous`` as its majority verdict
  (a majority counts where at least :data:`MIN_DETERMINED` seeds are determined, as in the pairs);
* *learning rate 0* (``dnn-tanh-lr0``, ``bnn-ste_sign-lr0``): no trajectory is ``simultaneous`` or
  ``separate`` (the reasons of the others are listed: ``not fitted`` is the expected one);
* *shuffled labels* (``dnn-tanh-shuffled``, ``bnn-ste_sign-bn-shuffled``): as *negative*.

A control arm measured under E gives E's outcome for that control; an estimator whose controls were
not run is "not run", never "passed".  The ReLU arm is binned with its own ranges (run-wide range,
``bin_size``), so its binning outcome stands for every ``binning`` label; kde labels match exactly.

**Pairs** (section 4): DNN arm A under estimator :math:`E_A`, BNN arm B under :math:`E_B`, layer by
layer (``layer_index``).  The seed-level contrast is :math:`\hat\Delta = \operatorname{median}_B D -
\operatorname{median}_A D` with a 95 % percentile-bootstrap interval and a permutation p-value over
seeds (:func:`ibtoolkit.phases.compare_seeds`), Holm-adjusted over all rows of one family and
dataset.  Outcome at a layer:

* *holds*: the controls of :math:`E_A` and :math:`E_B` pass; :math:`\hat\Delta > 0`, interval above 0,
  :math:`p_{Holm} < 0.05`; B's majority verdict is ``simultaneous`` and A's ``separate``, both with
  robustness ≥ 0.8;
* *contradicted*: the interval lies below 0, or B's majority is ``separate``, or A's is ``simultaneous``;
* *undetermined* otherwise, and always when fewer than 5 seeds of A or of B are determined or a
  control failed or was not run (the reason says which).

Each pair is decided with the undetermined trajectories' D left out and with it included; when the
two disagree the outcome is *depends on the undetermined trajectories*.  A layer of a ``dnn-tanh`` pair
whose outcome differs across the DNN estimators (binning 30/100 bins, kde σ²) is *resolution-dependent*.
Family 4 (BatchNorm) compares arms of one kind (with BN minus without) and reports the contrast only.
Family 5 (exploratory, added after the study had run, `study-coarse`): the 2-bit and the 4-bit tanh DNN
against every BNN arm under ``exact``, one Holm family per bit width, decided by the same rule; its
pairs also need the DNN arm's own shuffled-label control (``<arm>-shuffled``, :data:`COARSE_CONTROL`)
to pass, which gates nothing else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.study_presets import COARSE_BITS, SIGN_QUANTIZERS

__all__ = ["CONTROLS", "Pair", "study_pairs", "study_trajectories", "control_outcomes", "pair_outcomes", "resolution_table",
           "samples_table", "arm_accuracy", "summary_lines", "coarse_family", "COARSE_CONTROL", "MIN_DETERMINED",
           "ROBUST", "ALPHA"]

#: Fewer determined seeds than this in either arm makes a layer undetermined (protocol section 4).
MIN_DETERMINED = 5
#: Robustness a majority verdict needs to count (protocol section 4).
ROBUST = 0.8
#: Level of the Holm-adjusted permutation test.
ALPHA = 0.05
#: Smallest seed-median compression of the positive control, bits (protocol section 5).
MIN_POSITIVE_COMPRESSION = 0.1
_BY = ["dataset", "model", "layer", "layer_index", "estimator"]
_DETERMINED = ("simultaneous", "separate", "no compression")


@dataclass(frozen=True)
class Pair:
    """One comparison of the decision rule: DNN arm ``a`` under ``estimator_a`` against arm ``b``."""
    family: str
    dataset: str
    a: str
    b: str
    estimator_a: str
    estimator_b: str
    claim: bool = True       # False for the BatchNorm family (same kind of net: contrast only)

    @property
    def name(self) -> str:
        est = self.estimator_a if self.estimator_a == self.estimator_b else f"{self.estimator_a} | {self.estimator_b}"
        return f"{self.b} − {self.a} [{est}]"


# ------------------------------------------------------------------ trajectories and groups
def study_trajectories(plane: pd.DataFrame, samples: str = "all", grid=None) -> pd.DataFrame:
    """One row per trajectory of the plane on ``samples`` (``all`` pool rows, ``train`` or ``held-out``;
    a plane without a ``samples`` column is the all-rows plane), with the robustness grid."""
    from ibtoolkit import phases as ph

    if "samples" in plane.columns:
        plane = plane[plane["samples"].fillna("all").astype(str) == samples]
    elif samples != "all":
        plane = plane.iloc[:0]
    missing = [c for c in _BY + ["run", "epoch", "ixt", "ity"] if c not in plane.columns]
    if missing:
        raise ValueError(f"the study plane lacks column(s) {missing}; give the information_plane.csv of a study run")
    return ph.trajectory_phases(plane, by=_BY, grid=grid)


def _group(traj: pd.DataFrame, dataset: str, model: str, estimator: str) -> pd.DataFrame:
    return traj[(traj["dataset"] == dataset) & (traj["model"] == model) & (traj["estimator"] == estimator)]


def _share(verdict: str) -> str:
    return "share_" + verdict.replace(" ", "_")


def _majority(g: pd.DataFrame) -> dict:
    """Determined seeds, their majority verdict (or None) and its robustness, for one layer's seeds."""
    det = g[g["verdict"].isin(_DETERMINED)]
    counts = det["verdict"].value_counts()
    top = str(counts.index[0]) if len(counts) and counts.iloc[0] * 2 > len(det) else None
    robust = float(det[_share(top)].mean()) if top else math.nan
    return {"n_seeds": int(len(g)), "n_determined": int(len(det)), "majority": top, "robustness": robust,
            "counts": ", ".join(f"{v} {int(n)}" for v, n in counts.items()) or "none determined"}


# ------------------------------------------------------------------ controls
def _estimator_kind(label: str) -> str:
    return "binning" if str(label).startswith("binning") else str(label)


#: The controls of section 5 and their arms, by the kind of estimator they are measured with.
CONTROLS = {"exact": (("learning rate 0", "bnn-ste_sign-lr0"), ("shuffled labels", "bnn-ste_sign-bn-shuffled")),
            "other": (("positive", "dnn-tanh"), ("negative", "dnn-relu"), ("learning rate 0", "dnn-tanh-lr0"),
                      ("shuffled labels", "dnn-tanh-shuffled"))}


#: The exploratory family 5's own null control: each coarse DNN arm trained on shuffled labels
#: (``<arm>-shuffled``); it gates that arm's pairs only, never the pre-registered families.
COARSE_CONTROL = "shuffled labels (family 5)"


def coarse_family(bits: int) -> str:
    """The name of the exploratory family 5 for the ``bits``-bit DNN."""
    return f"5 coarse DNN, {bits}-bit (exploratory)"


def _coarse_arm(bits: int) -> str:
    """The ``bits``-bit tanh DNN arm of ``study-coarse``."""
    return f"dnn-tanh-{bits}bit"


def _shuffled(arm: str) -> str:
    """The shuffled-label control arm of ``arm`` (the presets' ``-shuffled`` suffix)."""
    return f"{arm}-shuffled"


def _expected_controls(estimator: str) -> tuple:
    return CONTROLS["exact" if str(estimator).startswith("exact") else "other"]


def control_outcomes(traj: pd.DataFrame, dataset: str = "tishby", seed: int = 0) -> pd.DataFrame:
    """Section 5: one row per (control, arm, estimator) for every estimator of the plane: ``passes``
    True, False, or None when the control arm was not measured under it (``not run``), and why."""
    rows = []
    rng = np.random.default_rng(seed)
    measured = traj[traj["dataset"] == dataset]
    # the ReLU arm's own binning settings are measured only for its control: no pair uses them
    used = traj.loc[traj["model"] != "dnn-relu", "estimator"].unique()
    for est in sorted(used):
        kind = _estimator_kind(est)
        for control, arm in _expected_controls(est):
            sub = measured[measured["model"] == arm]
            # the ReLU arm is binned with its own ranges: any of its binning settings stands for the kind
            labels = sorted(sub.loc[sub["estimator"].map(_estimator_kind) == kind, "estimator"].unique()) \
                if control == "negative" else ([est] if (sub["estimator"] == est).any() else [])
            if not labels:
                rows.append({"control": control, "arm": arm, "estimator": est, "measured_as": "",
                             "passes": None, "detail": "not run", "layers": ""})
            for label in labels:
                g = sub[sub["estimator"] == label]
                passes, detail, layers = _control_result(control, g, rng)
                rows.append({"control": control, "arm": arm, "estimator": est, "measured_as": label,
                             "passes": passes, "detail": detail, "layers": layers})
    for bits in COARSE_BITS:   # listed only where run: they belong to the exploratory family 5
        arm = _shuffled(_coarse_arm(bits))
        sub = measured[measured["model"] == arm]
        for label in sorted(sub["estimator"].unique()):
            passes, detail, layers = _control_result("shuffled labels", sub[sub["estimator"] == label], rng)
            rows.append({"control": COARSE_CONTROL, "arm": arm, "estimator": label, "measured_as": label,
                         "passes": passes, "detail": detail, "layers": layers})
    return pd.DataFrame(rows, columns=["control", "arm", "estimator", "measured_as", "passes", "detail", "layers"])


def _control_result(control: str, g: pd.DataFrame, rng) -> tuple[bool, str, str]:
    per_layer = {layer: _majority(gl) for layer, gl in g.groupby("layer", sort=True)}
    layers = "; ".join(f"{lay}: {m['counts']} of {m['n_seeds']}" for lay, m in per_layer.items())
    if control == "positive":
        return (*_positive(g, per_layer, rng), layers)
    if control == "learning rate 0":
        phased = g[g["verdict"].isin(["simultaneous", "separate"])]
        detail = ("no trajectory simultaneous or separate" if phased.empty else
                  f"{len(phased)} of {len(g)} trajectories " +
                  ", ".join(f"{v} {n}" for v, n in phased["verdict"].value_counts().items()))
        return phased.empty, detail + "; verdicts: " + _reasons(g), layers
    phased = {lay: m for lay, m in per_layer.items() if m["majority"] in ("separate", "simultaneous")}
    # a majority over fewer than MIN_DETERMINED determined seeds is not the arm's verdict (section 4)
    counted = {lay: m for lay, m in phased.items() if m["n_determined"] >= MIN_DETERMINED}
    weak = [f"{lay} {m['majority']} ({m['counts']})" for lay, m in phased.items() if lay not in counted]
    detail = ("no layer has a phase majority" if not counted else
              "majority " + ", ".join(f"{lay} {m['majority']} ({m['counts']})" for lay, m in counted.items()))
    if weak:
        detail += f"; not counted, fewer than {MIN_DETERMINED} determined seeds: " + ", ".join(weak)
    return not counted, detail, layers


def _reasons(g: pd.DataFrame) -> str:
    """``"not fitted 40, no compression 10"``: every trajectory's verdict or undetermined reason, counted."""
    labels = np.where(g["verdict"] == "undetermined", g["reason"].astype(str), g["verdict"].astype(str))
    return ", ".join(f"{k} {n}" for k, n in pd.Series(labels).value_counts().items())


def _positive(g: pd.DataFrame, per_layer: dict, rng) -> tuple[bool, str]:
    from ibtoolkit.phases.table import bootstrap_median

    found = []
    for layer, gl in g.groupby("layer", sort=True):
        m = per_layer[layer]
        if m["n_determined"] * 2 <= m["n_seeds"]:
            continue
        c = pd.to_numeric(gl["compression"], errors="coerce").to_numpy(dtype=float)
        idx = rng.integers(0, c.size, (2000, c.size))
        med, lo, _ = bootstrap_median(c, idx, 0.95)
        if med >= MIN_POSITIVE_COMPRESSION and lo > 0 and m["majority"] == "separate":
            found.append(f"{layer} (C = {med:.2f} bit, interval from {lo:.2f}; {m['counts']})")
    return bool(found), ("late compression at " + "; ".join(found)) if found else "no layer shows late compression"


def _controls_for(controls: pd.DataFrame, estimator: str) -> tuple[bool | None, str]:
    """Whether the controls expected under ``estimator`` pass: True, False or None (some not run).
    The negative control does not void an estimator; it qualifies DNN compression (:func:`_qualify`)."""
    rel = controls[(controls["estimator"] == estimator) & ~controls["control"].isin(["negative", COARSE_CONTROL])] \
        if len(controls) else controls
    if rel.empty:
        return None, f"no control was run under {estimator}"
    failed = rel[rel["passes"].eq(False)]
    if len(failed):
        return False, "; ".join(f"{r.control} ({r.arm}) failed under {estimator}: {r.detail}"
                                for r in failed.itertuples())
    missing = rel[rel["passes"].isna()]
    if len(missing):
        return None, "controls not run under " + estimator + ": " + ", ".join(
            f"{r.control} ({r.arm})" for r in missing.itertuples())
    return True, f"{len(rel)} control(s) pass"


# ------------------------------------------------------------------ pairs
def study_pairs(traj: pd.DataFrame) -> list[Pair]:
    """The families of section 4 (with the amendments), for the arms and estimators present in ``traj``."""
    present = {(d, m, e) for d, m, e in traj[["dataset", "model", "estimator"]].drop_duplicates().itertuples(index=False)}
    exact = [e for (_, _, e) in present if str(e).startswith("exact")]
    ex = exact[0] if exact else "exact"
    pairs: list[Pair] = []

    def add(family, d, a, b, ea, eb, claim=True):
        if (d, a, ea) in present and (d, b, eb) in present:
            pairs.append(Pair(family, d, a, b, ea, eb, claim))

    for d in sorted({p[0] for p in present}):
        bn = [f"bnn-{q}-bn" for q in SIGN_QUANTIZERS]
        plain = [f"bnn-{q}" for q in SIGN_QUANTIZERS]
        add("1 primary", d, "dnn-tanh-8bit", "bnn-ste_sign", ex, ex)
        add("1 primary", d, "dnn-tanh-8bit", "bnn-ste_sign-bn", ex, ex)
        add("1 primary", d, "dnn-tanh-bn-8bit", "bnn-ste_sign-bn", ex, ex)
        add("1 primary (wide)", d, "dnn-tanh-8bit-wide", "bnn-ste_sign-bn-wide", ex, ex)
        for b in bn + plain:
            add("2 quantizers", d, "dnn-tanh-8bit", b, ex, ex)
        dnn_est = sorted(e for (dd, m, e) in present if dd == d and m == "dnn-tanh")
        for e in dnn_est:
            extra = [] if _preregistered_full_precision(e) else ["resolution"]
            for b in bn + plain:
                add(_family("3 full precision", extra), d, "dnn-tanh", b, e, ex)
            add(_family("3 full precision", ["wide", *extra]), d, "dnn-tanh-wide", "bnn-ste_sign-bn-wide", e, ex)
        for bits in COARSE_BITS:   # exploratory (docs/study/README.md): one Holm family per bit width
            for b in bn + plain:
                add(coarse_family(bits), d, _coarse_arm(bits), b, ex, ex)
        for q in SIGN_QUANTIZERS:
            add("4 BatchNorm", d, f"bnn-{q}", f"bnn-{q}-bn", ex, ex, claim=False)
        for e in dnn_est:
            add("4 BatchNorm", d, "dnn-tanh", "dnn-tanh-bn", e, e, claim=False)
    return pairs


def _family(name: str, qualifiers: list[str]) -> str:
    return f"{name} ({', '.join(qualifiers)})" if qualifiers else name


def _preregistered_full_precision(label: str) -> bool:
    """Family 3 of section 4 takes the tanh DNN under 30-bin binning and under each kde sigma^2; any other
    setting (the 100-bin binning of the resolution check) forms its own family, so that it does not enlarge
    the pre-registered family's Holm adjustment."""
    from ibtoolkit.registry import parse_estimator_spec

    try:
        spec = parse_estimator_spec(str(label))
    except ValueError:
        return True
    if spec["name"] != "binning":
        return True
    return spec.get("bin_size") is None and spec.get("n_bins", 30) == 30


def _contrast_rows(traj: pd.DataFrame, pair: Pair, include_undetermined: bool, rng) -> list[dict]:
    from ibtoolkit.phases import compare_seeds

    ga = _group(traj, pair.dataset, pair.a, pair.estimator_a)
    gb = _group(traj, pair.dataset, pair.b, pair.estimator_b)
    rows = []
    for idx in sorted(set(ga["layer_index"]) & set(gb["layer_index"])):
        la, lb = ga[ga["layer_index"] == idx], gb[gb["layer_index"] == idx]
        va, vb = (_usable(g, include_undetermined) for g in (la, lb))
        test = compare_seeds(vb, va, rng=rng)          # BNN minus DNN, the sign in which D measures the claim
        test["n_bnn"], test["n_dnn"] = test.pop("n_a"), test.pop("n_b")
        rows.append({"layer_index": int(idx), "layer": str(lb["layer"].iloc[0]), **test,
                     "n_excluded_dnn": int(len(la) - va.size), "n_excluded_bnn": int(len(lb) - vb.size),
                     **{f"{k}_dnn": v for k, v in _majority(la).items()},
                     **{f"{k}_bnn": v for k, v in _majority(lb).items()}})
    return rows


def _usable(g: pd.DataFrame, include_undetermined: bool) -> np.ndarray:
    v = pd.to_numeric(g["compression_during_fit"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(v) & (g["verdict"] != "failed").to_numpy()
    if not include_undetermined:
        keep &= (g["verdict"] != "undetermined").to_numpy()
    return v[keep]


def _decide(row: dict, prefix: str, pair: Pair, control_ok: tuple) -> tuple[str, str]:
    """(outcome, reason) at one layer from the contrast columns ``<prefix>...`` and the majorities."""
    ok, why = control_ok
    if not pair.claim:
        return "contrast only", "BatchNorm family: arms of one kind"
    if ok is not True:
        return "undetermined", ("control failed: " if ok is False else "") + why
    if min(row["n_determined_dnn"], row["n_determined_bnn"]) < MIN_DETERMINED:
        return "undetermined", (f"determined seeds {row['n_determined_dnn']} (DNN) and {row['n_determined_bnn']} "
                                f"(BNN); at least {MIN_DETERMINED} needed")
    lo, hi = row[prefix + "ci_low"], row[prefix + "ci_high"]
    est, p = row[prefix + "estimate"], row[prefix + "p_holm"]
    maj_a, maj_b = row["majority_dnn"], row["majority_bnn"]
    against = []
    if np.isfinite(hi) and hi < 0:
        against.append("D lower in the BNN (interval below 0)")
    if maj_b == "separate":
        against.append("the BNN's majority is separate")
    if maj_a == "simultaneous":
        against.append("the DNN's majority is simultaneous")
    if against:
        return "contradicted", "; ".join(against)
    missing = []
    if not (np.isfinite(est) and est > 0 and np.isfinite(lo) and lo > 0):
        missing.append("contrast interval not above 0")
    if not (np.isfinite(p) and p < ALPHA):
        missing.append(f"p_holm {p:.3g} ≥ {ALPHA}" if np.isfinite(p) else "no p-value")
    if maj_b != "simultaneous" or not row["robustness_bnn"] >= ROBUST:
        missing.append(f"BNN majority {maj_b or 'none'} (robustness {row['robustness_bnn']:.2f})")
    if maj_a != "separate" or not row["robustness_dnn"] >= ROBUST:
        missing.append(f"DNN majority {maj_a or 'none'} (robustness {row['robustness_dnn']:.2f})")
    return ("holds", "all four conditions met") if not missing else ("undetermined", "; ".join(missing))


def pair_outcomes(traj: pd.DataFrame, controls: pd.DataFrame, pairs: list[Pair] | None = None,
                  seed: int = 0) -> pd.DataFrame:
    """Section 4 at every layer of every pair: contrast without/with the undetermined trajectories
    (Holm over each family and dataset), majorities, and the outcome with its reason."""
    pairs = study_pairs(traj) if pairs is None else pairs
    rng = np.random.default_rng(seed)
    frames = []
    for pair in pairs:
        without = pd.DataFrame(_contrast_rows(traj, pair, False, rng))
        if without.empty:
            continue
        with_all = pd.DataFrame(_contrast_rows(traj, pair, True, rng))
        stats = ["estimate", "ci_low", "ci_high", "p_value", "n_bnn", "n_dnn", "n_excluded_dnn", "n_excluded_bnn"]
        frame = without.join(with_all[stats].add_prefix("all_"))
        for key, value in (("family", pair.family), ("dataset", pair.dataset), ("dnn", pair.a), ("bnn", pair.b),
                           ("estimator_dnn", pair.estimator_a), ("estimator_bnn", pair.estimator_b),
                           ("pair", pair.name), ("claim", pair.claim)):
            frame[key] = value
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    from ibtoolkit.phases import holm
    for prefix in ("", "all_"):
        out[prefix + "p_holm"] = np.nan
        for _, idx in out.groupby(["family", "dataset"]).groups.items():
            out.loc[idx, prefix + "p_holm"] = holm(out.loc[idx, prefix + "p_value"].to_numpy(dtype=float))
    outcome, reason = [], []
    control_cache: dict = {}
    for row in out.to_dict("records"):
        pair = Pair(row["family"], row["dataset"], row["dnn"], row["bnn"], row["estimator_dnn"],
                    row["estimator_bnn"], row["claim"])
        ok = _pair_controls(controls, pair, control_cache)
        o1, r1 = _qualify(*_decide(row, "", pair, ok), controls, pair)
        o2, r2 = _qualify(*_decide(row, "all_", pair, ok), controls, pair)
        if o1 == o2:
            outcome.append(o1)
            reason.append(r1)
        else:
            outcome.append("depends on the undetermined trajectories")
            reason.append(f"without them: {o1} ({r1}); with them: {o2} ({r2})")
    out["outcome"], out["reason"] = outcome, reason
    first = ["family", "dataset", "pair", "dnn", "bnn", "estimator_dnn", "estimator_bnn", "layer_index", "layer",
             "outcome", "reason"]
    return out[first + [c for c in out.columns if c not in first]]


def _qualify(outcome: str, reason: str, controls: pd.DataFrame, pair: Pair) -> tuple[str, str]:
    """Section 5, negative control: DNN compression found where the ReLU net also compresses is not support."""
    if outcome != "holds" or controls.empty:
        return outcome, reason
    neg = controls[(controls["control"] == "negative") & (controls["estimator"] == pair.estimator_a)]
    if neg["passes"].eq(False).any():
        return "undetermined", f"the ReLU control also compresses under {pair.estimator_a}: not counted as support"
    return outcome, reason


def _coarse_control(controls: pd.DataFrame, pair: Pair) -> tuple[bool | None, str]:
    """Family 5: the coarse DNN arm's own shuffled-label control under the DNN's estimator."""
    arm = _shuffled(pair.a)
    rel = controls[(controls["control"] == COARSE_CONTROL) & (controls["arm"] == arm)
                   & (controls["estimator"] == pair.estimator_a)] if len(controls) else controls
    if rel.empty:
        return None, f"controls not run: shuffled labels ({arm}) under {pair.estimator_a}"
    if rel["passes"].eq(False).any():
        return False, f"shuffled labels ({arm}) failed under {pair.estimator_a}: {rel['detail'].iloc[0]}"
    return True, "controls pass"


def _pair_controls(controls, pair: Pair, cache: dict) -> tuple:
    key = (pair.estimator_a, pair.estimator_b, pair.a if pair.family.startswith("5 ") else "")
    if key not in cache:
        results = [_controls_for(controls, e) for e in dict.fromkeys(key[:2])]
        if key[2]:
            results.append(_coarse_control(controls, pair))
        if any(ok is False for ok, _ in results):
            cache[key] = (False, "; ".join(w for ok, w in results if ok is False))
        elif any(ok is None for ok, _ in results):
            cache[key] = (None, "; ".join(w for ok, w in results if ok is None))
        else:
            cache[key] = (True, "controls pass")
    return cache[key]


def resolution_table(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Layers of the ``dnn-tanh`` pairs whose outcome differs across the DNN's estimators."""
    full = outcomes[outcomes["family"].str.startswith("3 full precision")] if len(outcomes) else outcomes
    rows = []
    for (d, bnn, idx), g in full.groupby(["dataset", "bnn", "layer_index"], sort=True):
        kinds = g["outcome"].unique()
        rows.append({"dataset": d, "bnn": bnn, "layer_index": int(idx), "layer": g["layer"].iloc[0],
                     "resolution_dependent": len(kinds) > 1,
                     "outcomes": "; ".join(f"{e}: {o}" for e, o in zip(g["estimator_dnn"], g["outcome"]))})
    return pd.DataFrame(rows, columns=["dataset", "bnn", "layer_index", "layer", "resolution_dependent", "outcomes"])


def samples_table(plane: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, arm, estimator, layer): the determined seeds' verdicts on all pool rows, on the
    training rows and on the held-out rows (planes told apart by ``samples``), and each plane's
    number of rows; only where a train or held-out plane exists."""
    if "samples" not in plane.columns:
        return pd.DataFrame()
    rows: dict = {}
    for samples in ("all", "train", "held-out"):
        traj = study_trajectories(plane, samples, grid={})
        if traj.empty:
            continue
        n = plane.loc[plane["samples"].fillna("all") == samples].groupby("run")["n_samples"].first()
        for key, g in traj.groupby(["dataset", "model", "estimator", "layer"], sort=True):
            m = _majority(g)
            row = rows.setdefault(key, dict(zip(["dataset", "arm", "estimator", "layer"], key)))
            row[samples] = f"{m['counts']} of {m['n_seeds']} (N = {int(n.reindex(g['run']).median())})"
    out = pd.DataFrame(list(rows.values()))
    keep = [c for c in ("train", "held-out") if c in out.columns]
    return out.dropna(subset=keep, how="all").reset_index(drop=True) if keep else pd.DataFrame()


def arm_accuracy(plane: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, arm): median over seeds of the last recorded epoch's training metric ``accuracy``
    (Keras's running mean over that epoch, training mode) and ``val_accuracy`` (held-out rows)."""
    cols = [c for c in ("accuracy", "val_accuracy") if c in plane.columns]
    last = plane.sort_values("epoch").groupby("run").tail(1)
    rows = []
    for (d, m), g in last.groupby(["dataset", "model"], sort=True):
        row = {"dataset": d, "arm": m, "precision": g["precision"].iloc[0] if "precision" in g else "",
               "seeds": int(g["run"].nunique()), "epochs": int(g["epoch"].max())}
        for c in cols:
            v = pd.to_numeric(g[c], errors="coerce")
            row[f"{c}_median"], row[f"{c}_min"], row[f"{c}_max"] = v.median(), v.min(), v.max()
        rows.append(row)
    return pd.DataFrame(rows)


def _measured_as(row, estimator: str) -> str:
    measured = getattr(row, "measured_as", "")
    return f" as `{measured}`" if isinstance(measured, str) and measured and measured != estimator else ""


def summary_lines(controls: pd.DataFrame, outcomes: pd.DataFrame) -> list[str]:
    """Per dataset and family: how many layers hold, are contradicted, undetermined (with the pairs)."""
    lines = []
    for est, g in controls.groupby("estimator", sort=True):
        state = {True: "passes", False: "FAILS", None: "not run"}
        lines.append(f"Controls under `{est}`: " + "; ".join(
            f"{r.control} (`{r.arm}`{_measured_as(r, est)}) {state[None if pd.isna(r.passes) else bool(r.passes)]}"
            for r in g.itertuples()) + ".")
    if outcomes.empty:
        return lines + ["No BNN/full-precision pair was run: no claim comparison."]
    claim = outcomes[outcomes["claim"]]
    for (d, fam), g in claim.groupby(["dataset", "family"], sort=True):
        counts = g["outcome"].value_counts()
        text = ", ".join(f"{n} {o}" for o, n in counts.items())
        holds = sorted({f"{r.bnn} {r.layer} [{r.estimator_dnn}]" for r in g.itertuples() if r.outcome == "holds"})
        contra = sorted({f"{r.bnn} {r.layer} [{r.estimator_dnn}]" for r in g.itertuples()
                         if r.outcome == "contradicted"})
        if holds and len(holds) == len(g):
            word = "holds"
        elif holds:
            word = "holds for " + ", ".join(holds) + ", not for the other layers"
        elif contra and len(contra) == len(g):
            word = "contradicted"
        else:
            word = "undetermined" if not contra else "contradicted at " + ", ".join(contra)
        why = _undetermined_reasons(g[g["outcome"] == "undetermined"]["reason"])
        lines.append(f"{d}, family {fam}: {len(g)} layer comparisons: {text}. Summary: {word}."
                     + (f" Undetermined because: {why}." if why else ""))
    return lines


_REASON_CLASSES = (("control failed", "a control failed"), ("controls not run", "controls not run"),
                   ("no control was run", "controls not run"),
                   ("determined seeds", f"< {MIN_DETERMINED} determined seeds"),
                   ("p_holm", f"p_holm ≥ {ALPHA}"), ("robustness", f"majority not robust (< {ROBUST})"),
                   ("interval", "interval not above 0"), ("ReLU control", "the ReLU control also compresses"))


def _undetermined_reasons(reasons: pd.Series) -> str:
    """``"< 5 determined seeds 12, p_holm ≥ 0.05 3"``: the first listed reason of each undetermined row, by class."""
    def first_class(text: str) -> str:
        hits = [(text.find(key), label) for key, label in _REASON_CLASSES if key in text]
        return min(hits)[1] if hits else text.split(";")[0]
    counts = reasons.astype(str).map(first_class).value_counts()
    return ", ".join(f"{label} {n}" for label, n in counts.items())
