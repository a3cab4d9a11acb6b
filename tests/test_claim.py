"""The report's verdict paragraph (experiments.claim): majorities, dissent, and the claim set beside them."""
import pandas as pd

from experiments.claim import summarise_verdicts


def _table(spec):
    rows = [{"dataset": "tishby", "model": "m", "precision": p, "variant": "v", "layer": f"d{i}", "estimator": est,
             "verdict": v} for p, est, verdicts in spec for i, v in enumerate(verdicts)]
    return pd.DataFrame(rows)


def test_summary_reports_majority_and_dissent():
    t = _table([("full", "binning", ["separate"] * 3), ("full", "kde", ["separate", "separate", "simultaneous"]),
                ("full", "ksg", ["no compression"] * 3),
                ("binary", "exact", ["simultaneous"] * 3), ("binary", "binning", ["simultaneous"] * 3)])
    text = summarise_verdicts(t)
    assert "DNN (full precision): 5 of 9 layer verdicts are 'separate'" in text
    assert "dissenting: ksg (no compression, 3/3)" in text
    assert "BNN (binary): 6 of 6 layer verdicts are 'simultaneous'" in text and "dissenting: none" in text
    assert "'separate' is consistent" in text


def test_summary_does_not_assume_the_answer():
    t = _table([("full", "binning", ["simultaneous"] * 2), ("binary", "exact", ["separate", "no compression"])])
    text = summarise_verdicts(t)
    assert "DNN (full precision): 2 of 2 layer verdicts are 'simultaneous'" in text
    assert "'simultaneous' is not consistent with the claim 'separate'" in text
    assert "mixed (no compression / separate)" in text
    assert summarise_verdicts(t.iloc[:0]).startswith("No phase verdicts")
