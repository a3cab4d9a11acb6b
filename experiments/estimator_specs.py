"""Estimators of an experiment: ``--estimator`` texts to specs, merged over a preset, told apart in tables.

``--estimator`` takes what :func:`ibtoolkit.registry.parse_estimator_spec` reads (a name, a label such
as ``kde(noise_variance=1e-3)``, ``binning:n_bins=10`` or a JSON object; never evaluated).  For each
model the parameters given are merged over the preset's spec of that estimator
(:func:`resolve_estimators`); several parameter sets of one estimator run side by side and are told
apart in every table and figure by :func:`distinguish_parameter_sets`.
"""
from __future__ import annotations

import copy
import json
import logging

from experiments import presets as _presets

__all__ = ["parse_cli_estimators", "resolve_estimators", "distinguish_parameter_sets", "spec_label"]

log = logging.getLogger("experiments.run")

#: Model precisions whose hidden representations are discrete codes (``exact`` applies).
DISCRETE_PRECISIONS = ("binary", "quantized")


def parse_cli_estimators(texts) -> list[dict]:
    """``--estimator`` values as spec dicts (:func:`ibtoolkit.registry.parse_estimator_spec`, no eval);
    ``"all"`` expands to every registered estimator.  ValueError on a malformed spec or unknown name."""
    from ibtoolkit import available_estimators
    from ibtoolkit.registry import parse_estimator_spec

    specs = []
    for text in texts:
        if isinstance(text, dict):
            specs.append(dict(text))
        elif text.strip() == "all":
            specs.extend({"name": name} for name in available_estimators())
        else:
            specs.append(parse_estimator_spec(text))
    unknown = list(dict.fromkeys(s["name"] for s in specs if s["name"] not in available_estimators()))
    if unknown:
        raise ValueError(f"unknown estimator(s) {', '.join(unknown)}; available: "
                         f"{', '.join(available_estimators())} (or 'all')")
    return specs


def _merged_over_preset(given: dict, pools) -> dict:
    """``given``'s parameters over the preset's spec of the same estimator (first pool that has it)."""
    base = next((copy.deepcopy(s) for pool in pools for s in pool if s["name"] == given["name"]), {})
    return {**base, **given}


def resolve_estimators(names, model_cfg: dict) -> list[dict]:
    """Estimator specs for one model.

    ``names`` None: the model's preset estimators.  Otherwise each entry (a ``--estimator`` text,
    see :func:`parse_cli_estimators`, or a spec dict) takes the model's preset spec of that
    estimator when the preset has it, else the precision's default spec
    (:func:`experiments.presets.estimator_defaults`), else none, and the parameters it gives are
    merged over that spec; ``"all"`` means every registered estimator.  Identical specs are kept
    once; several parameter sets of one estimator are kept side by side.  Discrete-only estimators
    (e.g. ``exact``) are dropped for full-precision models, whose activations are continuous (kept
    for ``binary`` and k-bit ``quantized`` models).
    """
    from ibtoolkit import get_estimator

    if names is None:
        specs = copy.deepcopy(model_cfg["estimators"])
    else:
        pools = [model_cfg.get("estimators", []),
                 _presets.estimator_defaults(model_cfg["precision"], model_cfg.get("activation", "tanh"))]
        merged = [_merged_over_preset(spec, pools) for spec in parse_cli_estimators(names)]
        specs = list({json.dumps(s, sort_keys=True): s for s in merged}.values())
    out = []
    for spec in specs:
        est = get_estimator(spec)
        if model_cfg["precision"] not in DISCRETE_PRECISIONS and getattr(est, "discrete_only", False):
            log.info("estimator %s skipped for full-precision model %s (it needs discrete codes)",
                     spec["name"], model_cfg["name"])
            continue
        out.append(spec)
    return out


def spec_label(spec: dict) -> str:
    """``name(param=value, ...)`` of a spec, as the tables label it (distinct per parameter set)."""
    from ibtoolkit import get_estimator

    try:
        return get_estimator(spec).describe()
    except ValueError:
        return spec["name"]


def distinguish_parameter_sets(plane):
    """Tell several parameter sets of one estimator apart in every table and figure.

    When rows of one ``estimator`` carry several ``estimator_label`` values (``--estimator
    'kde(noise_variance=0.1)' --estimator 'kde(noise_variance=1e-3)'``), their ``estimator``
    column becomes the name with only the parameters that differ, e.g. ``kde(noise_variance=0.001)``:
    the phase table, verdicts and figures group by it, and it parses back as an ``--estimator``.
    An estimator run with one parameter set keeps its plain name.
    """
    import pandas as pd

    if "estimator_params" not in plane or "estimator_label" not in plane:
        return plane
    plane = plane.copy()
    for name, group in plane.groupby("estimator", sort=False):
        sets = group["estimator_params"].drop_duplicates().tolist()
        if len(sets) < 2:
            continue
        params = [json.loads(p) for p in sets]
        differing = [k for k in dict.fromkeys(k for p in params for k in p)
                     if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
        for text, p in zip(sets, params):
            inner = ", ".join(f"{k}={p.get(k)}" for k in differing)
            plane.loc[(plane["estimator"] == name) & (plane["estimator_params"] == text), "estimator"] = \
                f"{name}({inner})"
    return plane.reset_index(drop=True) if isinstance(plane, pd.DataFrame) else plane
