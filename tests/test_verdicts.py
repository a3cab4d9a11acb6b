"""Validity gates, the threshold-free statistic, robustness and the seed-level contrast, on synthetic
trajectories and seed groups whose answers are known."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from ibtoolkit import phases as ph
from ibtoolkit.phases.table import grid_shares

E = np.unique(np.r_[0, np.round(np.logspace(0, 4, 60))])
U = np.log10(E + 1)


def _sig(u, c, w=0.1):
    return 1.0 / (1.0 + np.exp(-(np.asarray(u, float) - c) / w))


def _tent(up, peak, final, uf, a0=2.0):
    """Piecewise-linear I(X;T) in u: a0 -> peak at up -> final at uf, flat after."""
    return np.where(U <= up, a0 + (peak - a0) * U / up,
                    np.where(U <= uf, peak - (peak - final) * (U - up) / (uf - up), final))


ITY = _sig(U, 1.5)


# ----------------------------------------------------------------------------------- gates, one each
def test_each_undetermined_reason_on_a_synthetic_trajectory():
    rng = np.random.default_rng(0)
    at_ceiling = np.minimum(12.0, 11.0 + U)                        # at log2 N from u = 1 on (3/4 of the record)
    cases = {
        "saturated": dict(ixt=at_ceiling, ceiling=12.0),
        "above ceiling": dict(ixt=at_ceiling, ceiling=12.0, ixt_raw=at_ceiling + 30.0 * (U >= 1)),
        "not fitted": dict(ixt=_tent(1.0, 5.0, 3.0, 3.0), ity=0.3 + 0.005 * rng.standard_normal(E.size)),
        "still rising": dict(ixt=2.0 + U),                          # 1 bit per decade up to the last epoch
    }
    for reason, kw in cases.items():
        ity = kw.pop("ity", ITY)
        r = ph.analyse_trajectory(E, kw.pop("ixt"), ity, **kw)
        assert (r.verdict, r.reason) == ("undetermined", reason), reason
    singletons = ph.analyse_trajectory(E, _tent(1.0, 5.0, 3.0, 3.0), ITY, n_states=np.full(E.size, 950),
                                       n_samples=1000)
    assert (singletons.verdict, singletons.reason) == ("undetermined", "saturated")
    few = ph.analyse_trajectory(E[:4], [1.0, 2.0, 3.0, 2.0], [0.0, 0.5, 1.0, 1.0])
    assert (few.verdict, few.reason) == ("undetermined", "too few points")
    # the same trajectories pass when the thresholds say so: they are parameters
    assert ph.analyse_trajectory(E, 2.0 + U, ITY, rising_slope=2.0).reason == ""
    assert ph.analyse_trajectory(E, at_ceiling, ITY, ceiling=12.0, max_saturated_fraction=0.9).reason == ""
    assert ph.analyse_trajectory(E[:4], [1.0, 2.0, 3.0, 2.0], [0.0, 0.5, 1.0, 1.0], min_points=4,
                                 smoothing=1).reason == ""


def test_a_flat_noisy_plateau_is_not_still_rising_but_a_slow_rise_is():
    base = _tent(1.5, 6.0, 6.0, 3.0)                               # rises, then a flat plateau from u = 1.5
    for seed in range(20):
        noise = 0.05 * np.random.default_rng(seed).standard_normal(E.size)
        r = ph.analyse_trajectory(E, base + noise, ITY)
        assert r.verdict == "no compression" and r.reason == "", seed
        rising = ph.analyse_trajectory(E, base + noise + 0.3 * np.clip(U - 3.0, 0, None), ITY)
        assert rising.reason == "still rising", seed                # +0.3 bit per decade over the last decade


def test_verdicts_are_the_four_words_and_reasons_the_documented_ones():
    assert ph.VERDICTS == ("simultaneous", "separate", "no compression", "undetermined")
    assert ph.REASONS == ("too few points", "above ceiling", "saturated", "not fitted", "still rising")


# ---------------------------------------------------------------------------------------- statistic
def test_compression_during_fit_closed_form():
    """I(T;Y) flat for 5 points, then up by 1/k per point for k points; I(X;T) falls by C/k per point
    during those k points: D = sum_j (1/k)(C j / k) = C (k + 1) / (2k)."""
    k, c = 8, 2.0
    ity = np.r_[np.zeros(5), np.arange(1, k + 1) / k, np.ones(5)]
    falling = np.r_[np.full(5, 6.0), 6.0 - c * np.arange(1, k + 1) / k, np.full(5, 6.0 - c)]
    assert ph.compression_during_fit(falling, ity) == pytest.approx(c * (k + 1) / (2 * k), abs=1e-12)
    after = np.r_[np.full(5 + k, 6.0), 6.0 - c * np.arange(1, 6) / 5]  # all compression after fitting ends
    assert ph.compression_during_fit(after, ity) == 0.0
    rising = np.r_[np.linspace(1, 6, 5 + k), np.full(5, 6.0)]        # no compression at all
    assert ph.compression_during_fit(rising, ity) == 0.0
    assert math.isnan(ph.compression_during_fit(falling, np.full(ity.size, 0.4)))  # no fitting phase


def test_statistic_orders_simultaneous_above_separate_and_no_compression():
    sim = ph.analyse_trajectory(E, _tent(0.5, 6.0, 3.0, 2.5), ITY)
    sep = ph.analyse_trajectory(E, _tent(1.8, 6.0, 3.0, 4.0), ITY)
    flat = ph.analyse_trajectory(E, _tent(1.8, 6.0, 6.0, 4.0), ITY)
    assert (sim.verdict, sep.verdict, flat.verdict) == ("simultaneous", "separate", "no compression")
    assert sim.compression_during_fit > 1.0 and sep.compression_during_fit < 0.1
    assert flat.compression_during_fit == 0.0


# --------------------------------------------------------------------------------------- robustness
def test_grid_shares_equal_a_brute_force_count_over_the_grid():
    rng = np.random.default_rng(3)
    for ixt in (_tent(1.2, 6.0, 4.0, 3.0) + 0.05 * rng.standard_normal(E.size), _tent(0.5, 6.0, 3.0, 2.5),
                2.0 + U):
        grid = ph.ROBUSTNESS_GRID
        names = list(grid)
        verdicts = [ph.analyse_trajectory(E, ixt, ITY, **dict(zip(names, combo))).verdict
                    for combo in itertools.product(*grid.values())]
        shares = grid_shares(E, ixt, ITY, dict(ph.SPEC_DEFAULTS), dict(ph.GATE_DEFAULTS), grid)
        assert shares == {v: verdicts.count(v) / len(verdicts) for v in ph.VERDICTS}


def _plane(run, ixt, ity=ITY, *, precision="binary", model="bnn", seed=0, layer_index=0, estimator="exact",
           status="ok", ceiling=12.0):
    return pd.DataFrame({"run": run, "dataset": "tishby", "model": model, "precision": precision, "variant": "v",
                         "seed": seed, "estimator": estimator, "estimator_label": f"{estimator}()",
                         "layer": f"hidden_{layer_index + 1}", "layer_index": layer_index, "epoch": E.astype(int),
                         "ixt": ixt, "ity": ity, "ixt_ceiling": ceiling, "status": status,
                         "error": "" if status == "ok" else "boom"})


def test_phase_table_robustness_fragile_reason_and_counts():
    knife = _tent(1.22, 6.0, 4.0, 2.22)        # overlap about 0.5 at the default fit fraction: thresholds flip it
    clean = _tent(0.5, 6.0, 3.0, 2.5)
    parts = [_plane(f"k{s}", knife, seed=s, layer_index=1) for s in range(2)]
    parts += [_plane(f"c{s}", clean, seed=s) for s in range(3)]
    parts += [_plane("sat", np.minimum(12.0, 11.0 + U), seed=3), _plane("rise", 2.0 + U, seed=4),
              _plane("dead", np.nan, seed=5, status="failed")]
    table = ph.phase_table(pd.concat(parts, ignore_index=True), n_boot=100).set_index("layer")
    k = table.loc["hidden_2"]
    assert k["robustness"] < 0.8 and k["fragile"]
    c = table.loc["hidden_1"]
    assert c["verdict"] == "simultaneous" and c["n_simultaneous"] == 3 and c["n_seeds"] == 6
    assert c["n_undetermined"] == 2 and c["n_failed"] == 1
    assert sorted(c["reason"].split("; ")) == ["failed 1/6", "saturated 1/6", "still rising 1/6"]
    per = ph.trajectory_phases(pd.concat(parts, ignore_index=True))
    assert c["robustness"] == pytest.approx(per.loc[per.layer == "hidden_1", "share_simultaneous"].mean())
    dead = per[per.run == "dead"].iloc[0]
    assert dead["verdict"] == "failed" and f"{E.size} failed" in dead["reason"] and dead["n_rows"] == E.size
    one = ph.trajectory_phases(_plane("one", _tent(0.5, 6.0, 3.0, 2.5)).iloc[:1])
    assert one[["verdict", "reason"]].iloc[0].tolist() == ["undetermined", "too few points"]


# ----------------------------------------------------------------------------------------- contrast
def _groups(n_a=10, n_b=10, shift=True, seed=0):
    """Group a (binary): compression overlaps fitting by a seed-dependent amount; group b (full): the
    same family of trajectories, with (shift) or without a difference in where I(X;T) peaks."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(n_a):
        parts.append(_plane(f"a{s}", _tent(rng.uniform(0.4, 0.7), 6.0, 3.0, 2.5), seed=s))
    for s in range(n_b):
        up = rng.uniform(1.8, 2.1) if shift else rng.uniform(0.4, 0.7)
        parts.append(_plane(f"b{s}", _tent(up, 6.0, 3.0, up + 1.5), precision="full", model="dnn", seed=s,
                            estimator="exact"))
    return pd.concat(parts, ignore_index=True)


def test_contrast_finds_a_known_difference_with_an_interval_excluding_zero():
    plane = _groups()
    out = ph.contrast(plane)
    assert list(out.columns) == ["dataset", "estimator_label", "layer_index"] + ph.CONTRAST_COLUMNS
    row = out.iloc[0]
    assert (row["group_a"], row["group_b"], row["statistic"]) == ("binary", "full", "compression_during_fit")
    per = ph.trajectory_phases(plane, by=["precision"])
    d = per.groupby("precision")["compression_during_fit"].median()
    assert row["estimate"] == pytest.approx(d["binary"] - d["full"], abs=1e-12) and row["estimate"] > 1.0
    assert row["ci_low"] > 0 and row["ci_low"] <= row["estimate"] <= row["ci_high"]
    # all C(20, 10) splits; no 10 + 10 seeds give a p below 140 / C(20, 10) (groups that do not overlap)
    assert 140 / math.comb(20, 10) <= row["p_value"] < 0.01 and row["p_holm"] == row["p_value"]
    assert (row["n_a"], row["n_b"], row["n_excluded_a"], row["n_excluded_b"]) == (10, 10, 0, 0)


def test_contrast_exclusions_groups_by_model_and_pooling_guard():
    plane = pd.concat([_groups(4, 4), _plane("sat", np.minimum(12.0, 11.0 + U), seed=9),
                       _plane("dead", np.nan, seed=10, status="failed")], ignore_index=True)
    row = ph.contrast(plane).iloc[0]
    assert (row["n_a"], row["n_excluded_a"]) == (4, 2)
    row = ph.contrast(plane, include_undetermined=True).iloc[0]
    assert (row["n_a"], row["n_excluded_a"]) == (5, 1)
    control = _plane("relu", _tent(1.9, 6.0, 3.0, 3.4), precision="full", model="dnn-relu")
    pooled = pd.concat([plane, control], ignore_index=True)
    with pytest.raises(ValueError, match="pools models"):
        ph.contrast(pooled)
    by_model = ph.contrast(pooled, a="bnn", b="dnn").iloc[0]
    assert (by_model["group_a"], by_model["group_b"], by_model["n_b"]) == ("bnn", "dnn", 4)
    with pytest.raises(ValueError, match="none of"):
        ph.contrast(pooled, a="bnn", b="nope")
    with pytest.raises(ValueError, match="both a and b"):
        ph.contrast(pooled, a="bnn")


def test_exact_permutation_p_value_against_enumeration_by_hand():
    a, b = np.array([3.0, 5.0, 4.0]), np.array([1.0, 0.5, 2.5, 0.0])
    pooled = np.r_[a, b]
    obs = abs(np.median(a) - np.median(b))
    hits = total = 0
    for idx in itertools.combinations(range(7), 3):
        rest = [i for i in range(7) if i not in idx]
        total += 1
        hits += abs(np.median(pooled[list(idx)]) - np.median(pooled[rest])) >= obs - 1e-12
    assert ph.permutation_p_value(a, b) == pytest.approx(hits / total, abs=1e-15) and total == 35
    assert ph.permutation_p_value([1.0], [2.0]) == 1.0                 # one seed each: cannot reject


@pytest.mark.parametrize("n, n_draws", [(6, 400), (10, 400)])
def test_null_share_of_p_below_005_is_within_its_binomial_band(n, n_draws):
    """Two groups from one distribution: P(p < 0.05) is 0.05 up to the test's discreteness (6 + 6:
    exact, 23/462; 10 + 10: 2000 random permutations, the sampled path, max_exact=0); the count over
    n_draws draws lies in the central 99.9 % binomial band around it."""
    rng = np.random.default_rng(11)
    max_exact = 200_000 if n < 10 else 0
    hits = sum(ph.permutation_p_value(rng.standard_normal(n), rng.standard_normal(n), rng=rng,
                                      max_exact=max_exact) < 0.05
               for _ in range(n_draws))
    lo, hi = binom.ppf([0.0005, 0.9995], n_draws, 0.05)
    assert lo <= hits <= hi, hits


def test_holm_and_bootstrap_interval():
    np.testing.assert_allclose(ph.holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])
    lo, hi = ph.bootstrap_interval(np.full(5, 2.0), np.full(5, 0.5))
    assert lo == hi == 1.5


# ----------------------------------------------------------------- saturation: one definition with the gate
def test_saturated_epochs_are_those_at_the_ceiling_or_with_mostly_singleton_codes():
    ixt = np.array([12.0, 11.97, 11.9, 5.0, np.nan])
    states = np.array([10, 10, 10, 950, 990])
    np.testing.assert_array_equal(ph.saturated_epochs(ixt, 12.0), [True, True, False, False, False])
    np.testing.assert_array_equal(ph.saturated_epochs(ixt, 12.0, states, 1000), [True, True, False, True, True])
    np.testing.assert_array_equal(ph.saturated_epochs(ixt, None, states, 1000), [False, False, False, True, True])
    np.testing.assert_array_equal(ph.saturated_epochs(ixt, 12.0, saturation_tol=0.2), [True, True, True, False,
                                                                                      False])


def test_an_epoch_at_the_ceiling_or_of_singletons_counts_once_toward_the_saturated_gate():
    """30 % of the epochs at the ceiling and another 30 % with mostly singleton codes: 60 % of the
    epochs cannot show compression, above the gate's 50 %, although neither kind alone reaches it."""
    n = E.size
    ixt = _tent(0.5, 6.0, 3.0, 2.5)
    first, second = np.arange(n) < 0.3 * n, (np.arange(n) >= 0.4 * n) & (np.arange(n) < 0.7 * n)
    ixt = np.where(first, 12.0, ixt)
    states = np.where(second, 990, 100)
    r = ph.analyse_trajectory(E, ixt, ITY, ceiling=12.0, n_states=states, n_samples=1000)
    assert (r.verdict, r.reason) == ("undetermined", "saturated")


def test_saturation_check_and_gate_share_one_definition():
    """Rows 0.03 bit below the ceiling are saturated for the gate (tolerance 0.05 bit) and for the
    saturation table alike; rows of mostly singleton codes too; the table's `saturated` column is the
    gate's condition (share >= max_saturated_fraction)."""
    n = E.size
    near = np.where(np.arange(n) < 0.6 * n, 12.0 - 0.03, _tent(0.5, 6.0, 3.0, 2.5))
    a = _plane("near", near, estimator="binning").assign(n_states=100, n_samples=4096)
    singles = _tent(0.5, 6.0, 3.0, 2.5)
    b = _plane("singles", singles, estimator="binning").assign(
        n_states=np.where(np.arange(n) >= 0.2 * n, 4000, 100), n_samples=4096)
    c = _plane("clean", singles, estimator="binning").assign(n_states=100, n_samples=4096)
    plane = pd.concat([a, b, c], ignore_index=True)
    sat = ph.saturation(plane).set_index("run")
    per = ph.trajectory_phases(plane).set_index("run")
    assert sat.loc["near", "n_saturated"] == int(np.sum(np.arange(n) < 0.6 * n))
    assert sat.loc["singles", "n_saturated"] == int(np.sum(np.arange(n) >= 0.2 * n))
    assert sat.loc["clean", "n_saturated"] == 0
    for run in ("near", "singles", "clean"):
        assert sat.loc[run, "saturated"] == (per.loc[run, "reason"] == "saturated"), run
    assert sat["saturated"].tolist() == [False, True, True] and "n_flagged" not in sat.columns
    # the thresholds are the gate's parameters
    assert ph.saturation(plane, tol=0.01).loc[lambda d: d.run == "near", "n_saturated"].item() == 0
    with pytest.raises(ValueError, match="singleton_fraction"):
        ph.saturation(plane, singleton_fraction=0.0)
    with pytest.raises(ValueError, match="tol must be"):
        ph.saturation(plane, tol=-0.1)


def test_holm_is_capped_at_one_and_monotone_in_the_raw_p_values():
    p = np.array([0.2, 0.5, 0.01, 0.9, 0.3])
    adj = ph.holm(p)
    order = np.argsort(p)
    assert (np.diff(adj[order]) >= 0).all() and adj.max() == 1.0 and (adj >= p).all()
    assert adj[2] == pytest.approx(0.05)


def test_permutation_p_value_exact_and_sampled_extremes():
    """Fully separated groups of 5 + 5 ({100..104} vs {0..4}): |median difference| ≥ 100 needs
    {102, 103, 104} on one side and {0, 1, 2} on the other, the other 2 of 4 seeds free: 6 splits
    and their mirrors, p = 12/252 exactly.  Sampled (max_exact below 252): p = (1 + k)/(1 + n_perm),
    never 0, within its binomial error of 12/252.  Fewer than 2000 random permutations are refused."""
    a, b = np.arange(5.0) + 100.0, np.arange(5.0)
    assert ph.permutation_p_value(a, b) == pytest.approx(12 / 252, abs=1e-15)
    sampled = ph.permutation_p_value(a, b, max_exact=100, n_perm=2000, rng=1)
    k = sampled * 2001 - 1
    assert k == pytest.approx(round(k), abs=1e-9) and sampled >= 1 / 2001
    assert abs(sampled - 12 / 252) < 4 * math.sqrt(12 / 252 * (1 - 12 / 252) / 2000)
    assert ph.permutation_p_value([5.0], [0.0, 0.1, 0.2, 0.3], max_exact=0, rng=2) >= 1 / 2001
    with pytest.raises(ValueError, match="at least 2000"):
        ph.permutation_p_value(a, b, max_exact=100, n_perm=500)


def test_ten_seeds_against_ten_are_tested_exactly_and_their_floor_limits_holm():
    """{100..109} vs {0..9}: |median difference| = 100 needs k >= 6 high seeds on one side with the two at
    its median positions being 104 and 105 (its other highs below them drawn from {100..103}, above them
    all of {106..109}) and, mirrored, the low side's median seeds 4 and 5: sum_k C(4, k-6)^2 = C(8, 4) = 70
    splits and their mirrors, p = 140 / C(20, 10) = 7.6e-4 exactly, the smallest p any 10 + 10 seeds can
    give. Holm brings it under 0.05 in a call of 65 rows, not of 66."""
    a, b = np.arange(10.0) + 100.0, np.arange(10.0)
    p = ph.permutation_p_value(a, b)
    assert p == pytest.approx(140 / math.comb(20, 10), abs=1e-15)
    assert ph.permutation_p_value(a * 3.0 + 7.0, b * 3.0 + 7.0) == p      # the same affine map on every seed
    assert ph.holm(np.r_[p, np.ones(64)])[0] < 0.05 < ph.holm(np.r_[p, np.ones(65)])[0]


def test_resampling_settings_that_cannot_work_are_refused_up_front():
    plane = _groups(3, 3)
    for kwargs, name in ((dict(n_boot=0), "n_boot"), (dict(n_perm=100), "n_perm"), (dict(max_exact=-1), "max_exact"),
                         (dict(level=1.5), "level")):
        with pytest.raises(ValueError, match=name):
            ph.contrast(plane, **kwargs)
    with pytest.raises(ValueError, match="n_boot"):
        ph.bootstrap_interval([1.0, 2.0], [0.0, 1.0], n_boot=0)
