"""Tests for ibtoolkit.phases on synthetic trajectories whose phases are known in closed form.

Trajectories live on a log-spaced schedule (epoch 0, then ~120 distinct epochs up to 10^4).
I(T;Y) is a logistic in u = log10(epoch + 1) (rise from its value at u = 0 towards 1 bit), so the
90 %-of-rise epoch is known analytically; I(X;T) is piecewise linear in u (rise to a peak P at u_p,
linear decay to F at u_f, flat after), so e_peak, the compression P − F and the overlap are known too.
"Within one recorded epoch" means the recovered position is at most one schedule point away.
"""
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from ibtoolkit import phases as ph

E = np.unique(np.r_[0, np.round(np.logspace(0, 4, 150))])
U = np.log10(E + 1)


def _sig(u, c, w):
    return 1.0 / (1.0 + np.exp(-(np.asarray(u, float) - c) / w))


class Synthetic:
    """Known trajectory: logistic I(T;Y) (centre c, width w) and piecewise-linear I(X;T)."""

    def __init__(self, c, w, up, P, F, uf, a0=2.0):
        self.c, self.w, self.up, self.P, self.F, self.uf, self.a0 = c, w, up, P, F, uf, a0
        s0 = _sig(0.0, c, w)
        target = s0 + 0.9 * (1.0 - s0)
        self.u_fit = c + w * math.log(target / (1.0 - target))  # analytic 90 %-of-rise point
        self.i_fit = int(np.argmax(U >= self.u_fit))  # first recorded epoch past it
        self.i_peak = int(np.argmin(np.abs(U - up)))

    def ixt_at(self, u):
        u = np.asarray(u, float)
        return np.where(u <= self.up, self.a0 + (self.P - self.a0) * u / self.up,
                        np.where(u <= self.uf, self.P - (self.P - self.F) * (u - self.up) / (self.uf - self.up),
                                 self.F))

    def curves(self, noise=0.0, seed=0):
        ity, ixt = _sig(U, self.c, self.w), self.ixt_at(U)
        if noise:
            rng = np.random.default_rng(seed)
            ixt = ixt + noise * rng.standard_normal(U.size)
            ity = ity + noise * rng.standard_normal(U.size)
        return ixt, ity

    def overlap_band(self):
        """Overlap when e_fit and the peak each move by at most one recorded epoch."""
        vals = []
        for i_f in (self.i_fit - 1, self.i_fit, self.i_fit + 1):
            for i_p in (self.i_peak - 1, self.i_peak, self.i_peak + 1):
                peak = float(self.ixt_at(U[i_p]))
                done = peak - float(self.ixt_at(U[i_f])) if i_f > i_p else 0.0
                vals.append(min(max(done / (peak - self.F), 0.0), 1.0))
        return min(vals), max(vals)

    def compression_band(self):
        peaks = [float(self.ixt_at(U[i])) for i in (self.i_peak - 1, self.i_peak, self.i_peak + 1)]
        return min(peaks) - self.F, max(max(peaks), self.P) - self.F


SEPARATE = Synthetic(c=1.2, w=0.1, up=1.4, P=5.0, F=3.0, uf=4.0)      # peak at fit, long slow compression
SIMULTANEOUS = Synthetic(c=2.0, w=0.1, up=0.5, P=5.0, F=3.0, uf=2.5)  # compression during fitting
NO_COMPRESSION = Synthetic(c=1.5, w=0.1, up=2.0, P=5.0, F=4.95, uf=3.0)  # 0.05 bit drop only


# ------------------------------------------------------------------------------------------------ smooth
def test_smooth_monotone_unchanged_spike_removed_ends_kept():
    mono = np.cumsum(np.random.default_rng(0).random(30))
    np.testing.assert_array_equal(ph.smooth(mono, 5), mono)
    spiky = np.zeros(9)
    spiky[4] = 10.0
    np.testing.assert_array_equal(ph.smooth(spiky, 3), np.zeros(9))
    v = np.array([7.0, 0.0, 0.0, 0.0, 3.0])
    out = ph.smooth(v, 5)
    assert out[0] == 7.0 and out[-1] == 3.0  # window shrinks to the point itself at the ends
    assert out[1] == 0.0  # median(7, 0, 0)
    np.testing.assert_array_equal(ph.smooth(v, 1), v)
    for bad in (0, 2, 4.0):
        with pytest.raises(ValueError, match="odd positive integer"):
            ph.smooth(v, bad)


def test_smooth_matches_brute_force():
    v = np.random.default_rng(1).standard_normal(23)
    for w in (3, 5, 7):
        h = (w - 1) // 2
        ref = [np.median(v[i - min(h, i, 22 - i): i + min(h, i, 22 - i) + 1]) for i in range(23)]
        np.testing.assert_allclose(ph.smooth(v, w), ref, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ one trajectory
@pytest.mark.parametrize("case, verdict", [(SEPARATE, "separate"), (SIMULTANEOUS, "simultaneous"),
                                           (NO_COMPRESSION, "no compression")])
@pytest.mark.parametrize("noise, seeds", [(0.0, [0]), (0.01, range(10))])
def test_recovers_known_phases(case, verdict, noise, seeds):
    for seed in seeds:
        ixt, ity = case.curves(noise, seed)
        r = ph.analyse_trajectory(E, ixt, ity)
        assert r.verdict == verdict, seed
        assert abs(r.i_fit - case.i_fit) <= 1, (seed, r.i_fit, case.i_fit)
        assert r.e_fit == E[r.i_fit]
        if not (noise and verdict == "no compression"):  # a noisy plateau has no identifiable peak
            assert abs(r.i_peak - case.i_peak) <= 1, (seed, r.i_peak, case.i_peak)
        assert r.e_peak == E[r.i_peak]
        assert r.lag == pytest.approx(math.log10(r.e_peak + 1) - math.log10(r.e_fit + 1), abs=1e-12)
        lo, hi = case.compression_band()
        assert lo - 3 * noise <= r.compression <= hi + 3 * noise
        if verdict == "no compression":
            assert math.isnan(r.overlap)
        else:
            lo, hi = case.overlap_band()
            # noise of 3 sd on each of I(peak), I(e_fit), I(last) moves rho = (P - I_fit) / (P - F) by at
            # most (|dP| + |dI_fit|) / C + rho (|dP| + |dF|) / C <= 4 * 3 sd / C (first order)
            slack = 4 * 3 * noise / (case.P - case.F) + 1e-9
            assert lo - slack <= r.overlap <= hi + slack, (seed, r.overlap, lo, hi)


def test_reference_values_clean():
    sim = ph.analyse_trajectory(E, *SIMULTANEOUS.curves())
    # analytic overlap: (P - I(u_fit)) / (P - F) = (u_fit - u_p) / (u_f - u_p)
    assert sim.overlap == pytest.approx((SIMULTANEOUS.u_fit - 0.5) / 2.0, abs=0.02)
    sep = ph.analyse_trajectory(E, *SEPARATE.curves())
    assert sep.overlap < 0.1 and sep.compression == pytest.approx(2.0, abs=0.05)
    assert sep.compression_fraction == pytest.approx(sep.compression / sep.ixt_peak)
    assert sim.lag < 0 < sep.lag + 0.2  # BNN-like: peak long before fitting ends


def test_thresholds_are_parameters():
    ixt, ity = NO_COMPRESSION.curves()
    r = ph.analyse_trajectory(E, ixt, ity, min_compression_bits=0.01, min_compression_fraction=0.0)
    lo, hi = NO_COMPRESSION.compression_band()
    assert r.verdict != "no compression" and lo <= r.compression <= hi and hi <= 0.05 + 1e-12
    ixt, ity = SEPARATE.curves()
    assert ph.analyse_trajectory(E, ixt, ity, min_compression_fraction=0.5).verdict == "no compression"
    ov = ph.analyse_trajectory(E, *SIMULTANEOUS.curves()).overlap
    assert ph.analyse_trajectory(E, *SIMULTANEOUS.curves(), simultaneity_threshold=min(1.0, ov + 0.05)).verdict \
        == "separate"
    # fit_fraction moves e_fit to the analytic 50 % point
    r = ph.analyse_trajectory(E, *SEPARATE.curves(), fit_fraction=0.5)
    s0 = _sig(0, 1.2, 0.1)
    t = s0 + 0.5 * (1 - s0)
    assert abs(r.i_fit - int(np.argmax(U >= 1.2 + 0.1 * math.log(t / (1 - t))))) <= 1


def test_no_fitting_and_epoch_zero():
    r = ph.analyse_trajectory([0, 1, 2, 4], [3.0, 4.0, 2.0, 1.0], [0.5, 0.5, 0.5, 0.5], smoothing=1, min_points=2)
    assert r.e_fit == 0 and r.i_fit == 0 and r.ity_rise == 0
    assert r.e_peak == 1 and r.lag == pytest.approx(math.log10(2))  # +1 shift keeps epoch 0 on the axis
    assert r.overlap == 0.0 and r.compression == 3.0
    assert r.verdict == "undetermined" and r.reason == "not fitted"  # no fitting phase to place compression against
    assert math.isnan(r.compression_during_fit)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=[0, 1, 1], ixt=[1, 2, 3], ity=[1, 2, 3]), "strictly increasing"),
    (dict(epochs=[0, 1, 2], ixt=[1, np.nan, 3], ity=[1, 2, 3]), "ixt contains 1 NaN"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2], ity=[1, 2, 3]), "same length"),
    (dict(epochs=[-1, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3]), "non-negative"),
    (dict(epochs=[0], ixt=[1], ity=[1]), "at least 2"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3], fit_fraction=0), "fit_fraction"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3], simultaneity_threshold=1.5), "simultaneity"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3], min_compression_bits=-1), "min_compression_bits"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3], rising_slope=-1), "rising_slope"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3], max_saturated_fraction=0), "max_saturated_fraction"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3], min_points=1), "min_points"),
    (dict(epochs=[0, 1, 2], ixt=[1, 2, 3], ity=[1, 2, 3], smoothness=3), "unknown phase parameter"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ph.analyse_trajectory(**kwargs)


# ------------------------------------------------------------------------------------------- the table
def _rows(run, case, *, seed, estimator="binning", layer="d1", layer_index=0, precision="full", variant="tanh",
          noise=0.0, binary=False, ceiling=12.0):
    ixt, ity = case.curves(noise, seed) if isinstance(case, Synthetic) else case
    return pd.DataFrame({"run": run, "dataset": "tishby", "model": "m", "precision": precision, "variant": variant,
                         "seed": seed, "estimator": estimator, "layer": layer, "layer_index": layer_index,
                         "binary": binary, "epoch": E.astype(int), "ixt": ixt, "ity": ity, "ixt_ceiling": ceiling,
                         "status": "ok", "error": ""})


def test_phase_table_medians_verdicts_and_failures():
    parts = [_rows(f"r{s}", SEPARATE, seed=s, noise=0.01) for s in range(5)]
    parts += [_rows(f"b{s}", SIMULTANEOUS, seed=s, noise=0.01, precision="binary", variant="ste_sign")
              for s in range(3)]
    df = pd.concat(parts, ignore_index=True)
    df.loc[5, ["ixt", "ity", "status"]] = [np.nan, np.nan, "failed"]  # a failed estimate is dropped
    table = ph.phase_table(df, n_boot=200, seed=0)
    assert len(table) == 2
    full = table[table.precision == "full"].iloc[0]
    per = [ph.analyse_trajectory(*(lambda g: (g.epoch, g.ixt, g.ity))(
        df[(df.run == f"r{s}") & (df.status == "ok")])) for s in range(5)]
    assert full["n_seeds"] == 5 and full["seeds"] == "0,1,2,3,4"
    assert full["e_fit"] == np.median([p.e_fit for p in per])
    assert full["compression"] == pytest.approx(np.median([p.compression for p in per]))
    assert full["compression_lo"] <= full["compression"] <= full["compression_hi"]
    assert full["verdict"] == "separate" and full["verdict_fraction"] == 1.0 and full["n_separate"] == 5
    assert full["verdict_fraction_lo"] == 1.0
    binary = table[table.precision == "binary"].iloc[0]
    assert binary["verdict"] == "simultaneous" and binary["n_simultaneous"] == 3
    again = ph.phase_table(df, n_boot=200, seed=0)
    pd.testing.assert_frame_equal(table, again)  # seeded


def test_phase_table_majority_and_tie():
    df = pd.concat([_rows("a", SEPARATE, seed=0), _rows("b", SEPARATE, seed=1), _rows("c", SIMULTANEOUS, seed=2)],
                   ignore_index=True)
    row = ph.phase_table(df, n_boot=300).iloc[0]
    assert row["verdict"] == "separate" and row["verdict_fraction"] == pytest.approx(2 / 3)
    assert row["n_separate"] == 2 and row["n_simultaneous"] == 1 and row["n_no_compression"] == 0
    assert 0 <= row["verdict_fraction_lo"] <= 2 / 3 <= row["verdict_fraction_hi"] <= 1
    tie = ph.phase_table(df[df.run != "b"], n_boot=50).iloc[0]
    assert tie["verdict"] == "mixed" and tie["verdict_fraction"] == 0.5


def test_bootstrap_interval_covers_truth_on_seeded_sweep():
    """60 groups x 15 seeds; each seed's compression P - F ~ N(2, 0.3^2), so the true median is 2 bits.

    A 95 % interval covers in ~95 % of groups; with 60 groups, fewer than 51 covered (85 %) has
    probability < 1e-3 at a true coverage of 0.93.
    """
    rng = np.random.default_rng(2024)
    parts = []
    for g in range(60):
        for s in range(15):
            case = Synthetic(c=1.2, w=0.1, up=1.4, P=5.0, F=5.0 - rng.normal(2.0, 0.3), uf=4.0)
            parts.append(_rows(f"g{g}s{s}", case, seed=s, layer=f"L{g}"))
    table = ph.phase_table(pd.concat(parts, ignore_index=True), n_boot=1000, seed=0, grid={})  # no robustness grid
    # peak smoothing lowers the measured peak by at most one schedule step: allow that bias
    step = max(abs(float(SEPARATE.ixt_at(U[SEPARATE.i_peak + k])) - 5.0) for k in (-1, 1))
    covered = (table.compression_lo - step <= 2.0) & (2.0 <= table.compression_hi + 1e-12)
    assert covered.sum() >= 51, covered.sum()
    assert (table.compression_hi - table.compression_lo).median() < 0.6  # the intervals are not trivially wide


def test_duplicate_epochs_rejected_and_missing_columns():
    df = pd.concat([_rows("a", SEPARATE, seed=0), _rows("a", SEPARATE, seed=0)], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate epochs"):
        ph.phase_table(df)
    with pytest.raises(ValueError, match="lacks column"):
        ph.phase_table(df.drop(columns=["variant"]))
    with pytest.raises(ValueError, match="n_boot"):
        ph.phase_table(df, n_boot=0)


# ----------------------------------------------------------------------------------------- agreement
def _multi_estimator():
    base = pd.concat([_rows("r0", SEPARATE, seed=0, estimator="exact", binary=True, noise=0.01),
                      _rows("r0", SIMULTANEOUS, seed=0, estimator="exact", layer="d2", layer_index=1, binary=True,
                            noise=0.01)], ignore_index=True)
    twin = base.assign(estimator="exact_twin")
    shifted = base.assign(estimator="kde", ixt=base.ixt + 0.5, ity=base.ity - 0.25)
    return base, twin, shifted


def test_agreement_identical_and_shifted():
    base, twin, shifted = _multi_estimator()
    res = ph.estimator_agreement(pd.concat([base, twin, shifted], ignore_index=True))
    pairs = res.pairs.set_index(["estimator_a", "estimator_b"])
    for pair in [("exact", "exact_twin"), ("exact", "kde"), ("exact_twin", "kde")]:
        assert pairs.loc[pair, "n_trajectories"] == 2
        assert pairs.loc[pair, "verdict_agreement"] == 1.0  # a constant shift leaves the phases unchanged
        assert pairs.loc[pair, "spearman_ixt"] == pytest.approx(1.0)
        assert pairs.loc[pair, "spearman_ity"] == pytest.approx(1.0)
    assert res.verdicts["all_agree"].all() and len(res.verdicts) == 2
    ex = res.vs_exact.set_index("estimator")
    assert ex.loc["exact_twin", "mae_ixt"] == 0 and ex.loc["exact_twin", "mae_ity"] == 0
    assert ex.loc["kde", "mae_ixt"] == pytest.approx(0.5) and ex.loc["kde", "mae_ity"] == pytest.approx(0.25)
    assert ex.loc["kde", "n_points"] == 2 * E.size


def test_agreement_detects_disagreement():
    base, _, _ = _multi_estimator()
    flipped = base.assign(estimator="ksg", ixt=-base.ixt + 20.0)  # I(X;T) reversed in rank
    # and a binning curve with no compression on layer d1
    nc = NO_COMPRESSION.curves()[0]
    flipped.loc[flipped.layer == "d1", "ixt"] = nc
    res = ph.estimator_agreement(pd.concat([base, flipped], ignore_index=True))
    row = res.pairs.iloc[0]
    assert row["verdict_agreement"] < 1.0
    assert row["spearman_ity"] == pytest.approx(1.0) and row["spearman_ixt"] < 0.5
    assert not res.verdicts["all_agree"].all()
    # vs exact only on binary layers: none here
    res2 = ph.estimator_agreement(pd.concat([base, flipped.assign(binary=False)], ignore_index=True)
                                  .assign(binary=lambda d: d.estimator == "exact"))
    assert res2.vs_exact.empty


# ----------------------------------------------------------------------------------- sanity checks
def _dpi_frame(values, estimator="exact"):
    """values[epoch][layer_index] -> I(X;T)."""
    rows = [{"run": "r", "estimator": estimator, "epoch": e, "layer": f"d{l}", "layer_index": l,
             "ixt": v, "ity": 0.5, "ixt_ceiling": 12.0, "status": "ok"}
            for e, per in enumerate(values) for l, v in enumerate(per)]
    return pd.DataFrame(rows)


def test_dpi_quiet_on_clean_data():
    clean = _dpi_frame([[12, 9, 5, 5], [12, 8, 4, 2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ph.dpi_violations(clean)
    assert out.n_checks.tolist() == [6] and out.n_violations.tolist() == [0] and not out.is_bug.any()
    assert ph.dpi_violations(clean, detail=True).empty


def test_dpi_fires_on_constructed_violations():
    bad = _dpi_frame([[12, 9, 9.5, 5], [12, 8, 4, 4.2]], estimator="kde")
    out = ph.dpi_violations(bad)
    assert out.n_violations.tolist() == [2] and out.max_excess.iloc[0] == pytest.approx(0.5)
    assert "epoch 0" in out.example.iloc[0] and "d2" in out.example.iloc[0] and not out.is_bug.any()
    det = ph.dpi_violations(bad, detail=True)
    assert det[["epoch", "layer_from", "layer_to"]].values.tolist() == [[0, "d1", "d2"], [1, "d2", "d3"]]
    assert det.excess.tolist() == pytest.approx([0.5, 0.2])
    # a failed middle layer is skipped: d1 -> d3 is then checked
    gap = _dpi_frame([[12, 5, 9, 6]], estimator="kde")
    gap.loc[2, ["ixt", "status"]] = [np.nan, "failed"]
    assert ph.dpi_violations(gap).n_violations.tolist() == [1]
    # the same violation by `exact` is a bug
    with pytest.warns(RuntimeWarning, match="bug"):
        out = ph.dpi_violations(bad.assign(estimator="exact"))
    assert out.is_bug.all()
    # tolerance
    assert ph.dpi_violations(bad, tol=0.6).n_violations.tolist() == [0]


def test_saturation_fires_and_stays_quiet():
    df = _dpi_frame([[12.0, 9, 5], [11.995, 8, 4], [11.5, 8, 3]], estimator="binning")
    out = ph.saturation(df).set_index("layer")
    assert out.loc["d0", "n_saturated"] == 2 and out.loc["d0", "first_saturated"] == 0
    assert out.loc["d0", "last_saturated"] == 1 and not out.loc["d0", "saturated_at_end"]
    assert out.loc[["d1", "d2"], "n_saturated"].tolist() == [0, 0]
    assert ph.saturation(df, tol=0.0).loc[lambda d: d.layer == "d0", "n_saturated"].item() == 1
    assert len(ph.saturation(df, detail=True)) == 2
    clean = df.assign(ixt=df.ixt.clip(upper=10))
    assert ph.saturation(clean).n_saturated.sum() == 0




def test_pairs_that_coincide_by_construction_are_not_counted_as_agreement():
    base, _, _ = _multi_estimator()
    base = base.assign(estimator_params="{}", n_samples=4096)
    copy = base.assign(estimator="kde", estimator_params='{"noise_variance": 0.1}')     # e^-20 kernel: a copy
    wide = base.assign(estimator="ksg", estimator_params='{"k": 3}')
    pairs = ph.estimator_agreement(pd.concat([base, copy, wide], ignore_index=True)).pairs
    pairs = pairs.set_index(["estimator_a", "estimator_b"])
    assert pairs.loc[("exact", "kde"), "n_by_construction"] == 2
    assert math.isnan(pairs.loc[("exact", "kde"), "verdict_agreement"])
    assert pairs.loc[("exact", "ksg"), "n_by_construction"] == 0
    assert pairs.loc[("exact", "ksg"), "verdict_agreement"] == 1.0
    assert ph.copies_exact("kde", {"noise_variance": 0.1}, True, 4096)
    assert not ph.copies_exact("kde", {"noise_variance": 1.0}, True, 4096)          # e^-2: a real smoothing
    assert not ph.copies_exact("binning", {}, False, 4096) and ph.copies_exact("binning", {}, True, 4096)


def test_dpi_is_called_a_bound_only_for_exact():
    out = pd.concat([_dpi_frame([[12, 9, 5]]), _dpi_frame([[12, 9, 5]], estimator="kde")], ignore_index=True)
    checks = ph.dpi_violations(out).set_index("estimator")["check"]
    assert checks["exact"] == "DPI bound" and checks["kde"] == "depth monotonicity (not a bound)"


def test_binning_copies_exact_exactly_when_it_separates_minus_one_from_plus_one():
    """Ground truth: on a ±1 layer binning computes exact's numbers iff -1 and +1 fall in different bins.
    Any bin_size does that (floor(-1/s) = -1, floor(1/s) = 0); a fixed range that puts both into one
    edge bin, or a single bin, does not."""
    from ibtoolkit import get_estimator

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(256, 8)).astype(np.float32)
    t = np.where(x[:, :4] @ rng.normal(size=(4, 3)) > 0, 1.0, -1.0).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    truth = get_estimator("exact").estimate(x, t, y)
    for params in ({}, {"bin_size": 0.07}, {"bin_size": 3.0}, {"value_range": [0, 1]},
                   {"value_range": [5, 10]}, {"n_bins": 1}, {"value_range": "data", "n_bins": 2}):
        est = get_estimator("binning", **params)
        if params.get("value_range") == "data":
            est.fit_range(t)
        r = est.estimate(x, t, y)
        same = (r.ixt, r.ity) == pytest.approx((truth.ixt, truth.ity), abs=1e-12)
        assert ph.copies_exact("binning", json.dumps(params), True, 256) == same, params
