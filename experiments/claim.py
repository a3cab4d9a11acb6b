"""The study's claim and the report's verdict paragraph beside it.

The claim under test (Raj et al. 2020, after Shwartz-Ziv & Tishby 2017): full-precision networks
(DNNs) first fit, then compress (phases *separate*); binary networks (BNNs) fit and compress at once
(*simultaneous*).  :func:`summarise_verdicts` counts what the phase verdicts of
:func:`ibtoolkit.phases.phase_table` say (never a majority word: one seed's verdicts are never
"mixed"); :func:`claim_text` judges the claim from the seed-level test
(:func:`ibtoolkit.phases.contrast`, run by :func:`contrast_pairs`), with and without the
undetermined trajectories.  The library (:mod:`ibtoolkit.phases`) knows nothing of the claim.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["CLAIM", "FRAGILE_BELOW", "contrast_pairs", "summarise_verdicts", "claim_text"]

_TYPE_NAMES = {"binary": "BNN (binary)", "full": "DNN (full precision)"}
#: The claim under test (Raj et al. 2020): BNNs compress while fitting, DNNs fit then compress.
CLAIM = "DNNs fit then compress; BNNs fit and compress at once"
FRAGILE_BELOW = 0.8


def contrast_pairs(plane: pd.DataFrame, include_undetermined: bool) -> pd.DataFrame:
    """:func:`ibtoolkit.phases.contrast` of every binary model against every full-precision model
    (one call per pair, so controls and quantizers are never pooled; Holm within each call)."""
    from ibtoolkit import phases as ph

    models = plane.drop_duplicates("model").groupby("precision")["model"].apply(list).to_dict()
    frames = [ph.contrast(plane, a=bm, b=fm, include_undetermined=include_undetermined)
              for bm in models.get("binary", []) for fm in models.get("full", [])]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ph.CONTRAST_COLUMNS)


def summarise_verdicts(table: pd.DataFrame, model_col: str = "precision") -> str:
    """Per model type, how many layer verdicts (layer x variant x estimator rows of the phase table)
    are of each kind, with the reasons of the undetermined ones and the fragile count.

    Counts, never a majority word: one seed's verdicts are never called "mixed" (a row's verdict is
    ``mixed`` only when its seeds tie).  The claim itself is judged by :func:`claim_text`.
    """
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"summarise_verdicts expects the phase_table DataFrame, got {type(table).__name__}")
    if model_col not in table.columns:
        model_col = "model"
    if table.empty:
        return "No phase verdicts: the table holds no trajectories."
    sentences = []
    for mtype, g in table.groupby(model_col, dropna=False, sort=True):
        counts = g["verdict"].value_counts()
        parts = [f"{int(counts[v])} {v}" for v in ("simultaneous", "separate", "no compression", "undetermined",
                                                    "failed", "mixed") if v in counts]
        text = f"{_TYPE_NAMES.get(str(mtype), str(mtype))}: {len(g)} layer verdicts: " + ", ".join(parts)
        undetermined = g[g["verdict"] == "undetermined"]
        if len(undetermined) and "reason" in g:
            reasons = pd.Series([part.rsplit(" ", 1)[0] for r in undetermined["reason"].astype(str)
                                 for part in r.split("; ") if part]).value_counts()
            text += " (" + ", ".join(f"{r} {n}" for r, n in reasons.items()) + ")"
        if "fragile" in g:
            n_fragile = int(g.loc[g["verdict"].isin(["simultaneous", "separate", "no compression"]), "fragile"].sum())
            text += f"; {n_fragile} of the determined verdicts are fragile (robustness < {FRAGILE_BELOW})"
        sentences.append(text + ".")
    return " ".join(sentences)


def _claim_sentence(table: pd.DataFrame, alpha: float) -> str:
    if table is None or table.empty:
        return "no (dataset, estimator, layer) is measured in both groups"
    p = pd.to_numeric(table["p_holm"], errors="coerce")
    est = pd.to_numeric(table["estimate"], errors="coerce")
    support = int(((p < alpha) & (est > 0)).sum())
    against = int(((p < alpha) & (est < 0)).sum())
    untested = int(p.isna().sum())
    text = (f"{support} of {len(table)} rows support it (D higher in the BNN, Holm p < {alpha}), {against} "
            f"contradict it, {len(table) - support - against - untested} are inconclusive")
    if untested:
        text += f", {untested} cannot be tested (no usable seed in a group)"
    seeds = int(pd.concat([table["n_a"], table["n_b"]]).max()) if len(table) else 0
    if seeds <= 1:
        text += "; with one seed per group the smallest possible p is 1, so these runs cannot decide the claim"
    return text


def claim_text(contrast: pd.DataFrame | None, contrast_all: pd.DataFrame | None, alpha: float = 0.05) -> str:
    """The verdict on the claim from the seed-level contrast, without and with the undetermined trajectories."""
    if contrast is None and contrast_all is None:
        return ""
    return (f"Against the claim ({CLAIM}), seed-level test of D (BNN minus DNN, bootstrap interval, permutation "
            f"p, Holm): without the undetermined trajectories {_claim_sentence(contrast, alpha)}; with them "
            f"{_claim_sentence(contrast_all, alpha)}.")
