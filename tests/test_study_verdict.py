"""The study's decision rule (experiments.study_verdict, protocol sections 4-5) on synthetic study planes
whose answer is known: BNN arms that compress while fitting, DNN arms that fit then compress, and
controls built to pass or to fail."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments import study_verdict as sv
from experiments.study_report import read_planes, write_study_report

E = np.unique(np.r_[0, np.round(np.logspace(0, 4, 60))])
U = np.log10(E + 1)
ITY = 1.0 / (1.0 + np.exp(-(U - 1.5) / 0.1))         # fitting: I(T;Y) rises around epoch 30


def _tent(up, peak=6.0, final=3.0, uf=None, a0=2.0):
    """I(X;T) in u = log10(epoch + 1): a0 -> peak at up -> final at uf, flat after."""
    uf = up + 1.5 if uf is None else uf
    return np.where(U <= up, a0 + (peak - a0) * U / up,
                    np.where(U <= uf, peak - (peak - final) * (U - up) / (uf - up), final))


SHAPES = {
    "simultaneous": lambda r: (_tent(r.uniform(0.3, 0.6), uf=1.8), ITY),    # falls while I(T;Y) rises
    "separate": lambda r: (_tent(r.uniform(1.8, 2.1)), ITY),
    "flat": lambda r: (_tent(1.8, final=6.0), ITY),                       # no compression
    "unfitted": lambda r: (np.full(E.size, 5.0) + 0.01 * r.standard_normal(E.size), np.full(E.size, 0.02)),
    "saturated": lambda r: (np.minimum(12.0, 11.0 + U), ITY),
}


def _arm(model, shape, estimator="exact", *, seeds=10, dataset="tishby", layers=1, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(seeds):
        for li in range(layers):
            ixt, ity = SHAPES[shape if isinstance(shape, str) else shape[s]](rng)
            parts.append(pd.DataFrame({
                "run": f"{dataset}-{model}-s{s}", "dataset": dataset, "model": model,
                "precision": "binary" if model.startswith("bnn") else "full", "variant": "v", "seed": s,
                "estimator": estimator, "estimator_label": f"{estimator}[full]", "layer": f"hidden_{li + 1}",
                "layer_index": li, "epoch": E.astype(int), "ixt": ixt, "ity": ity, "ixt_ceiling": 12.0,
                "status": "ok", "error": "", "accuracy": 0.9 + 0.001 * s, "val_accuracy": 0.8}))
    return parts


def _controls(estimators=("exact",), bad=None):
    """Every control arm of the protocol, passing, under the given estimators (``bad``: one to break)."""
    parts = []
    for est in estimators:
        if est == "exact":
            parts += _arm("bnn-ste_sign-lr0", "simultaneous" if bad == "lr0" else "unfitted")
            parts += _arm("bnn-ste_sign-bn-shuffled", "flat")
        else:
            parts += _arm("dnn-tanh", "separate", est)
            parts += _arm("dnn-relu", "separate" if bad == "relu" else "flat", est)
            parts += _arm("dnn-tanh-lr0", "unfitted", est)
            parts += _arm("dnn-tanh-shuffled", "flat", est)
    return parts


def _primary(bnn="simultaneous", dnn="separate", **kw):
    return _arm("bnn-ste_sign", bnn, **kw) + _arm("dnn-tanh-8bit", dnn, **kw)


def _outcome(plane, dnn="dnn-tanh-8bit", bnn="bnn-ste_sign", family="1 primary"):
    traj = sv.study_trajectories(plane)
    controls = sv.control_outcomes(traj)
    out = sv.pair_outcomes(traj, controls)
    row = out[(out["dnn"] == dnn) & (out["bnn"] == bnn) & (out["family"] == family)]
    assert len(row) == 1
    return row.iloc[0], controls, out


def test_claim_holds_when_bnn_compresses_while_fitting_and_dnn_after_with_controls_passing():
    row, controls, _ = _outcome(pd.concat(_primary() + _controls(), ignore_index=True))
    assert controls["passes"].tolist() == [True, True]
    assert row["outcome"] == "holds", row["reason"]
    assert row["family"] == "1 primary"
    assert row["estimate"] > 0 and row["ci_low"] > 0 and row["p_holm"] < 0.05
    assert (row["majority_bnn"], row["majority_dnn"]) == ("simultaneous", "separate")
    assert (row["n_determined_bnn"], row["n_determined_dnn"], row["n_bnn"], row["n_dnn"]) == (10, 10, 10, 10)
    # all C(20, 10) = 184756 splits; groups that do not overlap: only the 2 C(8, 4) splits that keep each
    # side's median seeds are as extreme (tests/test_verdicts.py), p = 140 / 184756
    assert row["p_value"] == pytest.approx(140 / 184756)


def test_a_bnn_that_also_compresses_after_fitting_contradicts_the_claim():
    row, _, _ = _outcome(pd.concat(_primary(bnn="separate") + _controls(), ignore_index=True))
    assert row["outcome"] == "contradicted"
    assert "the BNN's majority is separate" in row["reason"]


def test_without_controls_or_with_a_failed_control_nothing_is_decided():
    row, controls, _ = _outcome(pd.concat(_primary(), ignore_index=True))
    assert controls["passes"].isna().all() and set(controls["detail"]) == {"not run"}
    assert row["outcome"] == "undetermined" and "not run" in row["reason"]
    row, controls, _ = _outcome(pd.concat(_primary() + _controls(bad="lr0"), ignore_index=True))
    lr0 = controls[controls["control"] == "learning rate 0"].iloc[0]
    assert lr0["passes"] is False or lr0["passes"] == False  # noqa: E712 - object column
    assert "10 of 10 trajectories simultaneous" in lr0["detail"]
    assert row["outcome"] == "undetermined" and "learning rate 0" in row["reason"]


def test_fewer_than_five_determined_seeds_make_a_layer_undetermined():
    bnn = ["saturated"] * 6 + ["simultaneous"] * 4
    plane = pd.concat(_arm("bnn-ste_sign", bnn) + _arm("dnn-tanh-8bit", "separate") + _controls(),
                      ignore_index=True)
    row, _, _ = _outcome(plane)
    assert row["n_determined_bnn"] == 4 and row["outcome"] == "undetermined"
    assert "determined seeds 10 (DNN) and 4 (BNN)" in row["reason"]
    # the undetermined (saturated) seeds' D is left out without them and enters with them
    assert row["n_bnn"] == 4 and row["all_n_bnn"] == 10 and row["n_excluded_bnn"] == 6
    # the summary names why each family's undetermined layers are undetermined
    _, controls, out = _outcome(plane)
    lines = sv.summary_lines(controls, out)
    assert "tishby, family 1 primary: 1 layer comparisons: 1 undetermined. Summary: undetermined. " \
           "Undetermined because: < 5 determined seeds 1." in lines
    _, controls, out = _outcome(pd.concat(_primary(), ignore_index=True))
    assert any(line.endswith("Undetermined because: controls not run 1.") for line in sv.summary_lines(controls, out))


def test_positive_and_negative_controls_and_the_relu_qualification():
    est = "binning(n_bins=30)"
    plane = pd.concat(_controls((est, "exact")) + _arm("bnn-ste_sign", "simultaneous"), ignore_index=True)
    traj = sv.study_trajectories(plane)
    controls = sv.control_outcomes(traj)
    pos = controls[controls["control"] == "positive"].iloc[0]
    assert bool(pos["passes"]) and "late compression at hidden_1" in pos["detail"]
    out = sv.pair_outcomes(traj, controls)
    full = out[out["family"] == "3 full precision"].iloc[0]
    assert full["outcome"] == "holds", full["reason"]
    # the ReLU net compressing too: DNN compression under binning is not counted as support
    plane = pd.concat(_controls((est, "exact"), bad="relu") + _arm("bnn-ste_sign", "simultaneous"), ignore_index=True)
    traj = sv.study_trajectories(plane)
    controls = sv.control_outcomes(traj)
    neg = controls[controls["control"] == "negative"].iloc[0]
    assert not neg["passes"] and neg["detail"] == "majority hidden_1 separate (separate 10)"
    full = sv.pair_outcomes(traj, controls)
    full = full[full["family"] == "3 full precision"].iloc[0]
    assert full["outcome"] == "undetermined" and "ReLU control also compresses" in full["reason"]
    # a majority over fewer than 5 determined seeds is listed but not counted
    relu = ["separate"] * 3 + ["saturated"] * 7
    plane = pd.concat(_arm("dnn-relu", relu, est) + _arm("dnn-tanh", "separate", est), ignore_index=True)
    neg = sv.control_outcomes(sv.study_trajectories(plane))
    neg = neg[neg["control"] == "negative"].iloc[0]
    assert neg["passes"] and neg["detail"] == ("no layer has a phase majority; not counted, fewer than 5 determined "
                                               "seeds: hidden_1 separate (separate 3)")
    # a tanh DNN that never compresses fails the positive control
    plane = pd.concat(_arm("dnn-tanh", "flat", est), ignore_index=True)
    pos = sv.control_outcomes(sv.study_trajectories(plane))
    pos = pos[pos["control"] == "positive"].iloc[0]
    assert not pos["passes"] and pos["detail"] == "no layer shows late compression"


def test_an_outcome_that_changes_with_the_dnn_estimator_is_resolution_dependent():
    coarse, fine = "binning(n_bins=30)", "kde(noise_variance=0.1)"
    parts = _controls((coarse, fine, "exact")) + _arm("bnn-ste_sign", "simultaneous")
    plane = pd.concat(parts, ignore_index=True)
    # under the kde setting the tanh DNN compresses while fitting: its positive control fails there
    plane = plane[~((plane["model"] == "dnn-tanh") & (plane["estimator"] == fine))]
    plane = pd.concat([plane, *_arm("dnn-tanh", "simultaneous", fine, seed=2)], ignore_index=True)
    traj = sv.study_trajectories(plane)
    out = sv.pair_outcomes(traj, sv.control_outcomes(traj))
    row = sv.resolution_table(out).iloc[0]
    assert row["bnn"] == "bnn-ste_sign" and bool(row["resolution_dependent"])
    assert row["outcomes"] == f"{coarse}: holds; {fine}: undetermined"
    fine_row = out[(out["family"] == "3 full precision") & (out["estimator_dnn"] == fine)].iloc[0]
    assert fine_row["reason"].startswith("control failed: positive (dnn-tanh) failed under " + fine)


def test_holm_runs_over_a_family_and_the_batchnorm_family_only_contrasts():
    plane = pd.concat(_arm("bnn-ste_sign", "simultaneous") + _arm("bnn-ste_sign-bn", "separate")
                      + _arm("dnn-tanh-8bit", "separate") + _controls(), ignore_index=True)
    traj = sv.study_trajectories(plane)
    out = sv.pair_outcomes(traj, sv.control_outcomes(traj))
    primary = out[out["family"] == "2 quantizers"]   # ste_sign with and without BN against the 8-bit DNN
    assert len(primary) == 2
    from ibtoolkit.phases import holm
    assert np.allclose(primary["p_holm"], holm(primary["p_value"].to_numpy()))
    # the 100-bin setting of the resolution check is its own family: it does not enlarge family 3's Holm
    plane = pd.concat(_controls(("binning(n_bins=30)", "binning(n_bins=100)", "exact"))
                      + _arm("bnn-ste_sign", "simultaneous"), ignore_index=True)
    traj = sv.study_trajectories(plane)
    full = sv.pair_outcomes(traj, sv.control_outcomes(traj)).set_index("estimator_dnn")
    assert full.loc["binning(n_bins=30)", "family"] == "3 full precision"
    assert full.loc["binning(n_bins=100)", "family"] == "3 full precision (resolution)"
    assert (full["p_holm"] == full["p_value"]).all()     # one row per family
    bn = out[out["family"] == "4 BatchNorm"].iloc[0]
    assert bn["outcome"] == "contrast only" and bn["estimate"] < 0   # with BN compresses later: lower D


def test_report_puts_controls_first_and_reads_several_planes(tmp_path):
    plane = pd.concat(_primary() + _controls(), ignore_index=True)
    a, b = tmp_path / "a.csv.gz", tmp_path / "b.csv"
    plane.to_csv(a, index=False)
    plane[plane["model"] == "dnn-tanh-8bit"].to_csv(b, index=False)   # overlapping runs are counted once
    both = read_planes([a, b])
    assert len(both) == len(plane)
    path = write_study_report(tmp_path / "out", both)
    text = path.read_text()
    assert text.index("## 1. Controls") < text.index("## 3. Contrasts")
    assert "tishby, family 1 primary: 1 layer comparisons: 1 holds. Summary: holds." in text
    outcomes = pd.read_csv(tmp_path / "out" / "outcomes.csv")
    assert outcomes["family"].tolist() == ["1 primary", "2 quantizers"]
    assert outcomes["outcome"].tolist() == ["holds", "holds"]
    acc = pd.read_csv(tmp_path / "out" / "accuracy.csv").set_index("arm")
    assert acc.loc["bnn-ste_sign", "accuracy_median"] == pytest.approx(0.9045)
    with pytest.raises(ValueError, match="no plane at"):
        read_planes([tmp_path / "missing.csv"])


def test_report_of_a_run_without_any_pair_says_so(tmp_path):
    # a study part that trains one full-precision arm only (no BNN twin): controls, accuracy, no contrast
    plane = pd.concat(_arm("dnn-tanh", "separate", "binning"), ignore_index=True)
    text = write_study_report(tmp_path / "out", plane).read_text()
    assert "No BNN/full-precision pair was run: no claim comparison." in text
    assert "positive (`dnn-tanh`) passes; negative (`dnn-relu`) not run" in text


def test_combined_planes_get_one_label_per_parameter_set():
    """A part names its sets by the parameters that differ within it; combined, the labels are rebuilt."""
    from experiments.study_report import relabel_estimators

    def rows(label, params, run):
        return pd.DataFrame({"run": [run], "estimator": [label], "estimator_label": [f"binning({params})"],
                             "estimator_params": [params]})
    p30 = '{"n_bins": 30, "value_range": [-1.0, 1.0]}'
    p100 = '{"n_bins": 100, "value_range": [-1.0, 1.0]}'
    pdata = '{"n_bins": 100, "value_range": "data"}'
    positive = pd.concat([rows("binning(n_bins=30)", p30, "a"), rows("binning(n_bins=100)", p100, "a")])
    nulls = pd.concat([rows("binning(n_bins=30, value_range=[-1.0, 1.0])", p30, "b"),
                       rows("binning(n_bins=100, value_range=data)", pdata, "c")])
    out = relabel_estimators(pd.concat([positive, nulls], ignore_index=True))
    labels = dict(zip(zip(out["run"], out["estimator_params"]), out["estimator"]))
    assert labels[("a", p30)] == labels[("b", p30)] == "binning(n_bins=30, value_range=[-1.0, 1.0])"
    assert labels[("a", p100)] == "binning(n_bins=100, value_range=[-1.0, 1.0])"
    assert labels[("c", pdata)] == "binning(n_bins=100, value_range=data)"


def test_contrast_figure_draws_every_seed_at_its_d_with_the_layer_outcome(tmp_path):
    from matplotlib.collections import PathCollection

    from experiments.study_figures import plot_claim_contrasts

    plane = pd.concat(_primary() + _controls(), ignore_index=True)
    traj = sv.study_trajectories(plane)
    out = sv.pair_outcomes(traj, sv.control_outcomes(traj))
    fig = plot_claim_contrasts(traj, out, "tishby", tmp_path / "contrast")
    assert (tmp_path / "contrast.png").is_file()
    ax = [a for a in fig.axes if a.get_visible()]
    assert len(ax) == 1                     # the primary pair, also in family 2, is drawn once
    points = [c.get_offsets() for c in ax[0].collections if isinstance(c, PathCollection)]
    filled_dnn, hollow_dnn, filled_bnn, hollow_bnn = points
    for model, drawn in (("dnn-tanh-8bit", filled_dnn), ("bnn-ste_sign", filled_bnn)):
        d = traj.loc[traj["model"] == model, "compression_during_fit"].to_numpy(dtype=float)
        np.testing.assert_allclose(np.sort(np.asarray(drawn)[:, 1]), np.sort(d))   # every seed at its D
    assert len(hollow_dnn) == len(hollow_bnn) == 0
    assert np.asarray(filled_bnn)[:, 1].min() > np.asarray(filled_dnn)[:, 1].max()
    assert [t.get_text() for t in ax[0].texts] == ["holds"]
    assert plot_claim_contrasts(traj, out, "digits") is None


def test_exploratory_coarse_dnn_pairs_form_one_holm_family_per_bit_width():
    arms = _primary() + _arm("dnn-tanh-2bit", "separate") + _arm("dnn-tanh-4bit", "flat") + _controls()
    traj = sv.study_trajectories(pd.concat(arms, ignore_index=True))
    out = sv.pair_outcomes(traj, sv.control_outcomes(traj)).set_index("family")
    two = out.loc["5 coarse DNN, 2-bit (exploratory)"]
    assert two["outcome"] == "undetermined" and "shuffled labels (dnn-tanh-2bit-shuffled)" in two["reason"]
    # with each coarse arm's own shuffled-label control: passing for 2 bits, failing for 4 bits
    arms += _arm("dnn-tanh-2bit-shuffled", "flat") + _arm("dnn-tanh-4bit-shuffled", "separate")
    traj = sv.study_trajectories(pd.concat(arms, ignore_index=True))
    controls = sv.control_outcomes(traj)
    out = sv.pair_outcomes(traj, controls).set_index("family")
    two, four = out.loc["5 coarse DNN, 2-bit (exploratory)"], out.loc["5 coarse DNN, 4-bit (exploratory)"]
    assert (two["dnn"], two["bnn"], two["outcome"]) == ("dnn-tanh-2bit", "bnn-ste_sign", "holds")
    assert two["p_holm"] == two["p_value"]            # alone in its family, not adjusted with family 2
    assert four["outcome"] == "undetermined" and four["reason"].startswith(
        "control failed: shuffled labels (dnn-tanh-4bit-shuffled) failed under exact")
    # the failed exploratory control gates family 5 only: the primary pair still holds
    assert out.loc["1 primary", "outcome"] == "holds"
    assert controls.loc[controls["control"] == sv.COARSE_CONTROL, "passes"].tolist() == [True, False]

