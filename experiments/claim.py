"""The study's claim and the report's verdict paragraph beside it.

The claim under test (Raj et al. 2020, after Shwartz-Ziv & Tishby 2017): full-precision networks
(DNNs) first fit, then compress (phases *separate*); binary networks (BNNs) fit and compress at once
(*simultaneous*).  :func:`summarise_verdicts` reports what the phase verdicts of
:func:`ibtoolkit.phases.phase_table` say, and only then sets them beside this claim.  The library
(:mod:`ibtoolkit.phases`) detects phases and knows nothing of the claim.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["CLAIM", "summarise_verdicts"]

_TYPE_NAMES = {"binary": "BNN (binary)", "full": "DNN (full precision)"}
CLAIM = {"full": "separate", "binary": "simultaneous"}


def summarise_verdicts(table: pd.DataFrame, model_col: str = "precision", estimator_col: str = "estimator") -> str:
    """A paragraph stating the overall verdict per model type, as the data show it, and who dissents.

    ``table`` is the output of :func:`ibtoolkit.phases.phase_table`.  Per value of ``model_col`` (``precision``:
    binary / full; falls back to ``model``), the overall verdict is the most frequent ``verdict``
    among its rows (layer × variant × estimator), ``"mixed"`` on a tie; an estimator *dissents* when
    its own most frequent verdict differs.  Last, each model type's overall verdict is set beside the
    study's claim (DNN separate, BNN simultaneous) as "consistent" or "not consistent".
    """
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"summarise_verdicts expects the phase_table DataFrame, got {type(table).__name__}")
    if model_col not in table.columns:
        model_col = "model"
    missing = [c for c in (model_col, estimator_col, "verdict") if c not in table.columns]
    if missing:
        raise ValueError(f"summarise_verdicts: the table lacks column(s) {missing}; it has {list(table.columns)}")
    if table.empty:
        return "No phase verdicts: the table holds no usable trajectories."

    def majority(series) -> tuple[str, int, int]:
        counts = series.value_counts()
        top = counts[counts == counts.iloc[0]].index.tolist()
        return (top[0] if len(top) == 1 else "mixed (" + " / ".join(sorted(top)) + ")"), int(counts.iloc[0]), len(series)

    sentences, claims = [], []
    for mtype, g in table.groupby(model_col, dropna=False, sort=True):
        label = _TYPE_NAMES.get(str(mtype), str(mtype))
        verdict, k, n = majority(g["verdict"])
        per_est = {est: majority(ge["verdict"]) for est, ge in g.groupby(estimator_col, sort=True)}
        dissent = [f"{est} ({v}, {kk}/{nn})" for est, (v, kk, nn) in per_est.items() if v != verdict]
        breakdown = ", ".join(f"{est} {kk}/{nn}" for est, (v, kk, nn) in per_est.items() if v == verdict)
        text = f"{label}: {k} of {n} layer verdicts are '{verdict}'"
        if breakdown:
            text += f" (agreeing estimators: {breakdown})"
        text += "; dissenting: " + ("; ".join(dissent) if dissent else "none") + "."
        sentences.append(text)
        if str(mtype) in CLAIM:
            ok = verdict == CLAIM[str(mtype)]
            claims.append(f"{label} '{verdict}' is {'consistent' if ok else 'not consistent'} with the claim "
                          f"'{CLAIM[str(mtype)]}'")
    if claims:
        sentences.append("Against the study's claim (DNNs fit then compress; BNNs do both at once): "
                         + "; ".join(claims) + ".")
    return " ".join(sentences)
