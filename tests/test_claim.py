"""The verdict paragraph (experiments.claim) and the report's cells: counts instead of majority words, the claim from the contrast."""
import pandas as pd

from experiments import claim, report


def _table(spec):
    rows = [{"dataset": "tishby", "model": m, "precision": p, "variant": "v", "layer": f"hidden_{i + 1}",
             "layer_index": i, "estimator": est, "verdict": v, "reason": r, "robustness": rob, "fragile": rob < 0.8,
             "overlap": 0.6, "n_seeds": 1}
            for m, p, est, cells in spec for i, (v, r, rob) in enumerate(cells)]
    return pd.DataFrame(rows)


ONE_SEED = _table([("dnn", "full", "binning", [("undetermined", "saturated 1/1", 1.0),
                                               ("undetermined", "still rising 1/1", 1.0), ("separate", "", 0.9)]),
                   ("bnn", "binary", "exact", [("simultaneous", "", 0.5), ("no compression", "", 1.0),
                                               ("separate", "", 1.0)])])


def test_summary_counts_every_kind_and_never_says_mixed():
    text = claim.summarise_verdicts(ONE_SEED)
    assert "BNN (binary): 3 layer verdicts: 1 simultaneous, 1 separate, 1 no compression;" in text
    assert "1 of the determined verdicts are fragile" in text
    assert "DNN (full precision): 3 layer verdicts: 1 separate, 2 undetermined (saturated 1, still rising 1)" in text
    assert "mixed" not in text
    assert claim.summarise_verdicts(ONE_SEED.iloc[:0]).startswith("No phase verdicts")


def test_cells_show_reasons_and_fragile_verdicts():
    m = report.verdict_matrix(ONE_SEED).set_index(["model", "layer"])
    assert m.loc[("dnn", "hidden_1"), "binning"] == "undetermined (saturated)"
    assert m.loc[("bnn", "hidden_1"), "exact"] == "simultaneous (overlap 0.60) fragile 0.50"


def _contrast(estimates, p, n=(10, 10)):
    return pd.DataFrame({"dataset": "tishby", "estimator_label": "kde()", "layer_index": range(len(p)),
                         "estimate": estimates, "p_holm": p, "n_a": n[0], "n_b": n[1]})


def test_claim_is_judged_from_the_contrast_with_and_without_undetermined():
    text = claim.claim_text(_contrast([1.0, -0.5, 0.2], [0.01, 0.02, 0.4]),
                             _contrast([1.0, 0.3, float("nan")], [0.01, 0.03, float("nan")]))
    assert "without the undetermined trajectories 1 of 3 rows support it" in text and "1 contradict it" in text
    assert "with them 2 of 3 rows support it" in text and "1 cannot be tested" in text
    one = claim.claim_text(_contrast([0.6], [1.0], n=(1, 1)), _contrast([0.6], [1.0], n=(1, 1)))
    assert "cannot decide the claim" in one
