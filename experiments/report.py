"""Analysis, figures and ``report.md`` of one ``python -m experiments.run`` output directory.

:func:`analyse` runs the phase analysis of :mod:`ibtoolkit.phases` on the information-plane table
(phase table per model x layer x estimator over seeds, with reasons and robustness; the seed-level
contrast of BNNs against DNNs with and without the undetermined trajectories; the verdict summary;
estimator agreement, the depth-monotonicity / DPI and saturation checks); :func:`make_figures` draws the figures of
:mod:`ibtoolkit.plotting` as PNG and PDF; :func:`write_report` writes ``report.md``, which links
the figures, summarises each run, shows the phase table (rows model x layer, columns estimators) and
the verdict paragraph, and lists the checks and any failures.  A failing step is recorded (and
shown in the report and the CLI's exit status), never silently skipped.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import pathlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Analysis", "analyse", "make_figures", "write_report", "markdown_table", "verdict_matrix"]

log = logging.getLogger("experiments.report")


# -- analysis ------------------------------------------------------------------------------------
@dataclass
class Analysis:
    """Results of the phase analysis of one plane table (each part None when it could not be made)."""

    phases: pd.DataFrame | None = None
    verdicts: object = None          # experiments.claim: summarise_verdicts(phases) and claim_text(contrast, ...)
    contrast: pd.DataFrame | None = None        # ibtoolkit.phases.contrast, undetermined left out
    contrast_all: pd.DataFrame | None = None    # the same with the undetermined trajectories
    agreement: object = None         # ibtoolkit.phases.AgreementResult (verdicts, pairs, vs_exact)
    dpi: pd.DataFrame | None = None
    saturation: pd.DataFrame | None = None
    failures: list = field(default_factory=list)
    model_order: list = field(default_factory=list)   # models in the order of the preset / plane

    @classmethod
    def empty(cls) -> "Analysis":
        return cls(failures=["no information-plane rows: nothing to analyse"])

    def verdict_text(self) -> str:
        """The verdict table (model x layer by estimator) and summary, as printed by the CLI."""
        parts = []
        if self.phases is not None and len(self.phases):
            parts.append(_text_table(verdict_matrix(self.phases, self.model_order)))
        summary = _summary_text(self.verdicts)
        if summary:
            parts.append(summary)
        return "\n\n".join(parts) if parts else "no phase verdicts (see the failures)"


def _step(analysis: Analysis, label: str, func, *args):
    try:
        return func(*args)
    except Exception as exc:  # noqa: BLE001 - recorded as a failure, the other steps go on
        analysis.failures.append(f"{label}: {type(exc).__name__}: {exc}")
        log.error("%s failed: %s: %s", label, type(exc).__name__, exc)
        return None


def analyse(plane: pd.DataFrame) -> Analysis:
    """Phase table, contrast, verdict summary, estimator agreement, DPI and saturation checks of ``plane``.

    The phase table sees every row, so a layer whose estimates all failed appears as ``failed``.
    """
    from ibtoolkit import phases as ph

    from experiments.claim import claim_text, contrast_pairs, summarise_verdicts

    analysis = Analysis(model_order=list(dict.fromkeys(plane["model"].astype(str))) if "model" in plane else [])
    ok = plane[plane["status"] == "ok"] if "status" in plane else plane
    analysis.phases = _step(analysis, "phase table", ph.phase_table, plane)
    if "precision" in plane and plane["precision"].nunique() == 2:
        analysis.contrast = _step(analysis, "contrast", contrast_pairs, plane, False)
        analysis.contrast_all = _step(analysis, "contrast (undetermined included)", contrast_pairs, plane, True)
    if analysis.phases is not None:
        summary = _step(analysis, "verdict summary", summarise_verdicts, analysis.phases)
        claim = claim_text(analysis.contrast, analysis.contrast_all)
        analysis.verdicts = " ".join(t for t in (summary, claim) if t)
    analysis.agreement = _step(analysis, "estimator agreement", ph.estimator_agreement, ok)
    analysis.dpi = _step(analysis, "DPI check", ph.dpi_violations, ok)
    analysis.saturation = _step(analysis, "saturation check", ph.saturation, ok)
    return analysis


def verdict_matrix(phases: pd.DataFrame, model_order=()) -> pd.DataFrame:
    """Rows model x layer, columns estimators, cells ``verdict (overlap ...)``.

    With several seeds a cell shows the verdict counts over runs (e.g. ``simultaneous 3/3``) and
    the median overlap; an undetermined or failed verdict shows its reason; a verdict with
    robustness under 0.8 is marked ``fragile``.
    """
    df = phases.copy()
    model_key = "model" if "model" in df else "run"
    if "dataset" in df and df["dataset"].nunique() > 1:
        df["_row_model"] = df["dataset"].astype(str) + "/" + df[model_key].astype(str)
    else:
        df["_row_model"] = df[model_key].astype(str)
    layer_key = "layer"
    cells = {}
    for (model, layer, est), g in df.groupby(["_row_model", layer_key, "estimator"], sort=False):
        cells[(model, layer, est)] = _cell(g)
    rows = list(dict.fromkeys((m, lay) for m, lay, _ in cells))
    models = list(dict.fromkeys(df["_row_model"]))
    rank = {m: i for i, m in enumerate(sorted(models, key=lambda m: _order_key(m, list(model_order), models)))}
    index = (df.groupby(["_row_model", layer_key])["layer_index"].first().to_dict() if "layer_index" in df
             else {r: i for i, r in enumerate(rows)})
    rows.sort(key=lambda r: (rank[r[0]], index.get(r, 0)))
    estimators = list(dict.fromkeys(e for _, _, e in cells))
    table = pd.DataFrame([{"model": m, "layer": lay, **{e: cells.get((m, lay, e), "") for e in estimators}}
                          for m, lay in rows])
    return table


def _order_key(model: str, model_order: list, models: list) -> tuple:
    base = model.split("/")[-1]
    return (model_order.index(base) if base in model_order else len(model_order), models.index(model))


def _cell(group: pd.DataFrame) -> str:
    verdicts = group["verdict"].astype(str) if "verdict" in group else pd.Series(["?"] * len(group))
    counts = verdicts.value_counts()
    top = counts.index[0]
    text = top if len(group) == 1 else f"{top} {counts.iloc[0]}/{len(group)}"
    if len(group) == 1 and "n_seeds" in group and int(group["n_seeds"].iloc[0]) > 1 \
            and "verdict_fraction" in group:
        text += f" {float(group['verdict_fraction'].iloc[0]):.0%} of {int(group['n_seeds'].iloc[0])} seeds"
    if top in ("undetermined", "failed") and "reason" in group and str(group["reason"].iloc[0]):
        reason = str(group["reason"].iloc[0])
        text += f" ({reason.removesuffix(' 1/1')})"   # one seed: the reason alone
    elif "overlap" in group:
        overlap = pd.to_numeric(group["overlap"], errors="coerce")
        if overlap.notna().any():
            text += f" (overlap {float(np.nanmedian(overlap)):.2f})"
    if top not in ("undetermined", "failed") and "robustness" in group:
        rob = pd.to_numeric(group["robustness"], errors="coerce")
        if rob.notna().any() and float(rob.min()) < 0.8:   # experiments.claim.FRAGILE_BELOW
            text += f" fragile {float(rob.min()):.2f}"
    return text


def _summary_text(verdicts) -> str:
    if verdicts is None:
        return ""
    if isinstance(verdicts, str):
        return verdicts
    if isinstance(verdicts, pd.DataFrame):
        return _text_table(verdicts)
    if isinstance(verdicts, dict):
        for key in ("paragraph", "text", "summary"):
            if isinstance(verdicts.get(key), str):
                return verdicts[key]
        return json.dumps(verdicts, indent=2, default=str)
    return str(verdicts)


# -- figures -------------------------------------------------------------------------------------
def _slug(*parts) -> str:
    text = "-".join(str(p) for p in parts if p is not None and str(p) != "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def make_figures(plane: pd.DataFrame, analysis: Analysis, fig_dir) -> tuple[dict, list]:
    """Draw every figure of the report as PNG and PDF into ``fig_dir``.

    Returns ``({section: [(title, png path), ...]}, failures)``.  Figures: the information plane
    per (dataset, model) x estimator (all seeds of that model), I(X;T) and I(T;Y) against epoch
    per (dataset, model) x estimator, loss and accuracy curves per (dataset, model), the estimator
    grid per (dataset, model) and the overlap figure (DNN vs BNN, per estimator).  With several
    seeds each line is the per-epoch median over seeds and the band the interquartile range
    (25th-75th percentile); the caption says so.
    """
    from ibtoolkit import plotting

    fig_dir = pathlib.Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    ok = plane[plane["status"] == "ok"]
    figures: dict[str, list] = {"plane": [], "mi": [], "metrics": [], "grid": [], "overlap": []}
    failures: list[str] = []
    phases = analysis.phases

    def draw(section, title, stem, func, *args, **kwargs):
        try:
            fig = func(*args, **kwargs)
            paths = plotting.save_figure(fig, fig_dir / stem)
        except Exception as exc:  # noqa: BLE001 - recorded, the other figures go on
            failures.append(f"figure {stem}: {type(exc).__name__}: {exc}")
            log.error("%s", failures[-1])
            return
        png = next((pathlib.Path(p) for p in _as_list(paths) if str(p).endswith(".png")), fig_dir / f"{stem}.png")
        figures[section].append((title, png))

    for (dataset, model), g in ok.groupby(["dataset", "model"], sort=False, dropna=False):
        band = _seed_note(g)
        for (est, label), ge in g.groupby(["estimator", "estimator_label"], sort=False):
            ph = _subset(phases, dataset=dataset, model=model, estimator=est)
            draw("plane", f"{dataset} {model}: information plane ({est}){band}", _slug("plane", dataset, model, est),
                 plotting.plot_information_plane, ge, phases=ph)
            draw("mi", f"{dataset} {model}: MI vs epoch ({est}){band}", _slug("mi", dataset, model, est),
                 plotting.plot_mi_vs_epoch, ge, phases=ph)
        if g["estimator_label"].nunique() > 1:
            draw("grid", f"{dataset} {model}: estimators side by side", _slug("grid", dataset, model),
                 plotting.plot_estimator_grid, g, phases=_subset(phases, dataset=dataset, model=model))
    # one figure per (dataset, model): several seeds give the median and IQR band, not one figure per run
    metrics = plane.drop_duplicates(["run", "epoch"])
    for (dataset, model), g in metrics.groupby(["dataset", "model"], sort=False, dropna=False):
        runs = g["run"].drop_duplicates().tolist()
        stem = _slug("metrics", runs[0]) if len(runs) == 1 else _slug("metrics", dataset, model)
        name = runs[0] if len(runs) == 1 else f"{dataset} {model}"
        draw("metrics", f"{name}: loss and accuracy{_seed_note(g)}", stem, plotting.plot_metrics, g)
    if phases is not None and len(phases):
        draw("overlap", "overlap per layer, DNN vs BNN, per estimator", "overlap", plotting.plot_overlap, phases)
    return figures, failures


def _seed_note(rows: pd.DataFrame) -> str:
    """Caption suffix of a figure drawn from several seeds (runs) of one model."""
    n = rows["run"].nunique() if "run" in rows else 1
    return f" — median and interquartile band over {n} seeds" if n > 1 else ""


def _as_list(paths):
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    if isinstance(paths, dict):
        return list(paths.values())
    return list(paths)


def _subset(df, **keys):
    if df is None:
        return None
    mask = pd.Series(True, index=df.index)
    for key, value in keys.items():
        if key in df:
            mask &= df[key].astype(str) == str(value)
    return df[mask]


# -- markdown ------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, max_rows: int | None = None) -> str:
    """A GitHub-flavoured markdown table of ``df`` (no index)."""
    if df is None or not len(df.columns):
        return "_(empty)_"
    shown = df if max_rows is None else df.head(max_rows)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    for row in shown.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    if max_rows is not None and len(df) > max_rows:
        lines.append(f"\n_({len(df) - max_rows} more rows in the CSV)_")
    return "\n".join(lines)


def _text_table(df: pd.DataFrame) -> str:
    if df is None or not len(df):
        return ""
    cols = [str(c) for c in df.columns]
    rows = [[_fmt(v) for v in r] for r in df.itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _run_summary(runs, stores) -> pd.DataFrame:
    from ibtoolkit import open_store

    rows = []
    for cfg in runs:
        m = cfg["model"]
        row = {"run": cfg["run_id"], "dataset": cfg["dataset"], "model": m["name"], "precision": m["precision"],
               "variant": m["variant"], "seed": cfg["seed"], "epochs": m["epochs"], "lr": m["lr"],
               "batch": m["batch_size"], "optimizer": m.get("optimizer", "adam")}
        directory = stores.get(cfg["run_id"])
        if directory is None:
            row["status"] = "not trained"
        else:
            try:
                store = open_store(directory)
                row["status"] = store.status
                row["recorded epochs"] = len(store.epochs)
                last = store.metrics.get(int(store.epochs[-1]), {}) if len(store.epochs) else {}
                for key in ("accuracy", "val_accuracy", "loss"):
                    row[f"final {key}"] = last.get(key)
                row["events"] = "; ".join(f"{e.get('kind')}@{e.get('epoch')}" for e in store.events
                                          if not (e.get("kind") == "resumed" and e.get("epoch") is None))
            except Exception as exc:  # noqa: BLE001 - shown in the report row
                row["status"] = f"unreadable: {type(exc).__name__}: {exc}"
        rows.append(row)
    return pd.DataFrame(rows)


def _agreement_tables(agreement) -> str:
    """The estimator pairs and, when ``exact`` ran, each estimator against it, as markdown tables
    (the per-layer verdicts are the phase table's columns already)."""
    pairs = agreement.pairs[agreement.pairs["n_trajectories"] > 0]  # pairs never run on the same store: nothing to say
    parts = ["Estimator pairs run on the same stores (share of equal verdicts, rank correlation of I(X;T) and "
             "I(T;Y) over epochs):", "", markdown_table(pairs, max_rows=60)]
    if len(agreement.vs_exact):
        parts += ["", "Against `exact` (errors in bits on the same binary layers and epochs):", "",
                  markdown_table(agreement.vs_exact, max_rows=60)]
    return "\n".join(parts)


def _check_tables(analysis: Analysis) -> list[str]:
    out = []
    for title, df, note in (
            ("Depth monotonicity (a DPI bound for exact only)", analysis.dpi,
             "I(X;T_{l+1}) ≤ I(X;T_l) is the data-processing inequality only for a deterministic code measured "
             "exactly (`exact` on ±1 layers): a violation there is a bug. `kde`/`ksg` add independent noise to each "
             "layer and `binning` re-bins each layer, so for them the same comparison is not a bound and its "
             "violations do not measure bias (column `check`)."),
            ("Saturation", analysis.saturation,
             "An epoch is saturated when I(X;T) ≥ log2 N − 0.05 bit or its codes are mostly singletons "
             "(distinct codes ≥ 0.9 N): the estimate cannot show compression there. `saturated`: at least half "
             "of the epochs are, the condition of the `saturated` gate (docs/phases.md)."),
            ("Estimator agreement", analysis.agreement,
             "Verdict agreement and rank correlation of the trajectories between estimators on the same stores. "
             "Pairs that coincide by construction on a layer (on ±1 layers: `exact`, `binning`, and `kde` whose "
             "kernel between the nearest codes, N·exp(−2/σ²), is below 1e-3) are one measurement, not two: they "
             "are counted in `n_by_construction` and left out of `verdict_agreement`.")):
        out.append(f"### {title}\n\n{note}\n")
        if df is None:
            out.append("_not available (see failures)_\n")
        elif hasattr(df, "pairs") and hasattr(df, "vs_exact"):
            out.append(_agreement_tables(df) + "\n")
        elif isinstance(df, pd.DataFrame):
            out.append(markdown_table(df, max_rows=60) + "\n")
        else:
            out.append(f"```\n{df}\n```\n")
    return out


def write_report(out, *, preset, runs, stores, plane, analysis: Analysis, figures: dict, failures,
                 timings=None, estimation_seconds=None) -> pathlib.Path:
    """Write ``out/report.md`` and return its path (figure links are relative to ``out``).

    ``estimation_seconds``: optional DataFrame (``model``, ``estimator``, ``stores``, ``seconds``) of
    the estimation tasks' wall time, shown under the timings (where the estimation stage goes)."""
    out = pathlib.Path(out)
    lines = [f"# Information-plane report: preset `{preset['name']}`", "",
             f"_{preset.get('description', '')}_", "",
             f"Generated {_dt.datetime.now().isoformat(timespec='seconds')}. Preset as run: "
             f"[preset.json](preset.json). Every row of every plane: "
             f"[information_plane.csv](information_plane.csv); phases: [phases.csv](phases.csv).", ""]
    if len(plane):
        first = plane.iloc[0]
        lines += [f"Axis ceilings: log2 N = {first['ixt_ceiling']:.4g} bits (I(X;T) ≤ log2 N), "
                  f"H(Y) = {first['h_y']:.5g} bits (I(T;Y) ≤ H(Y)), over {int(first['n_samples'])} "
                  f"analysis samples.", ""]
    lines += ["## Runs", "", markdown_table(_run_summary(runs, stores)), ""]
    if len(plane):
        est = plane.drop_duplicates(["model", "estimator_label"])[["model", "estimator", "estimator_label"]]
        lines += ["Estimators and their parameters (every CSV row names them):", "", markdown_table(est), ""]
    lines += ["## Phases", "",
              "Verdict per model × layer (rows) and estimator (columns): `simultaneous` (compression happens "
              "while fitting), `separate` (compression after fitting), `no compression`, or `undetermined` with "
              "its reason (`saturated`, `still rising`, `not fitted`, `above ceiling`, `too few points`: the "
              "estimate cannot show compression or its absence); `failed` when no estimate of the layer "
              "succeeded. `fragile r`: only a share r < 0.8 of the specification grid (fit fraction 0.5/0.7/0.9/"
              "0.95 × smoothing 1/3/5/9 × minimum compression 0.1/0.5 bit × simultaneity threshold 0.3/0.5/0.7) "
              "gives this verdict. Definitions and formulas: docs/phases.md.", ""]
    if analysis.phases is not None and len(analysis.phases):
        lines += [markdown_table(verdict_matrix(analysis.phases, analysis.model_order)), ""]
    else:
        lines += ["_no phase table (see failures)_", ""]
    summary = _summary_text(analysis.verdicts)
    if summary:
        lines += ["### Verdict", "", summary if isinstance(analysis.verdicts, str) else f"```\n{summary}\n```", ""]
    for title, table in (("without the undetermined trajectories", analysis.contrast),
                         ("with the undetermined trajectories", analysis.contrast_all)):
        if table is not None:
            lines += [f"### Seed-level contrast, BNN − DNN, {title}", "",
                      "Statistic D = compression during fitting (bits; docs/phases.md); `estimate` = median over "
                      "BNN seeds − median over DNN seeds, `ci_low`/`ci_high` a 95 % bootstrap interval over seeds, "
                      "`p_value` a permutation test over seeds, `p_holm` Holm-adjusted over the rows.", "",
                      markdown_table(table), ""]
    lines += ["## Checks", ""] + _check_tables(analysis)
    titles = {"plane": "Information planes", "mi": "MI against epoch", "metrics": "Loss and accuracy",
              "grid": "Estimators side by side", "overlap": "Overlap of fitting and compression"}
    lines += ["## Figures", ""]
    for section, title in titles.items():
        items = figures.get(section) or []
        if not items:
            continue
        lines += [f"### {title}", ""]
        for caption, png in items:
            rel = os.path.relpath(png, out)
            pdf = os.path.splitext(rel)[0] + ".pdf"
            lines += [f"**{caption}** ([PDF]({pdf}))", "", f"![{caption}]({rel})", ""]
    if timings:
        lines += ["## Timings", "", markdown_table(pd.DataFrame(
            [{"stage": k, "seconds": round(v, 1)} for k, v in timings.items()])), ""]
    if estimation_seconds is not None and len(estimation_seconds):
        lines += ["Estimation by model and estimator: the wall time of its tasks summed over the stores (tasks "
                  "that ran in parallel workers overlap, so the sum can exceed the stage; cached estimates of "
                  "`--resume` count as read).", "", markdown_table(estimation_seconds.round({"seconds": 1})), ""]
    lines += ["## Failures", ""]
    lines += [f"- {f}" for f in failures] if failures else ["none"]
    path = out / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
