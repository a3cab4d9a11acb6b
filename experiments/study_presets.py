"""The study's presets (issue 19; protocol in docs/study/protocol.md): controls, BNN arms, matched arms,
three datasets, 10 seeds, one recording schedule.

:func:`study_presets` returns ``{name: preset}`` for ``study`` (every arm) and one preset per part, so
each part can be run alone::

    study-positive   the tanh DNN of Shwartz-Ziv & Tishby / Saxe et al. on the 12-bit task
    study-nulls      ReLU DNN, learning rate 0 (DNN, BNN), shuffled labels (DNN, BNN with BN)
    study-bnn        BNNs with and without BatchNorm for the four sign quantizers
    study-matched    DNN, DNN with BN, 8-bit DNNs (with/without BN) and the ste_sign BNNs, same settings
    study-resolution the 12-bit DNN arms under kde sigma^2 in {1e-3, 1e-2, 1e-1} and binning at 30 / 100 bins
    study-wide       12-bit task, 32-16-10-8-6: BNN with BN (trains to >= 95 %), its DNN and 8-bit twins
    study-digits     scikit-learn digits: DNN, 8-bit DNN, BNNs with BN
    study-fashion    Fashion-MNIST (its 10 000 test images as the pool): the same arms
    study-coarse     exploratory, added after the study had run (not in ``study``): 2-bit and 4-bit tanh
                     DNNs on the 12-bit task, coarse enough for ``exact`` where 8 bits saturate, and
                     each trained on shuffled labels (its null control)

Every arm of every part shares :data:`SHARED` (Adam 4e-4, batch 256, 8000 epochs, the 150-point log
schedule; Fashion-MNIST arms train 1000 epochs, :data:`EPOCHS`) and the seeds 0-9; an arm's ``datasets`` key names the datasets it runs on (arms differ in
widths per dataset).  The same arm (same name and dataset) is the same dict in every part, so a part
run into the study's output directory reuses the study's stores.
"""
from __future__ import annotations

import copy

__all__ = ["study_presets", "SHARED", "SEEDS", "WIDTHS", "WIDE_WIDTHS", "EPOCHS", "SIGN_QUANTIZERS", "STUDY_PARTS",
           "COARSE_BITS"]

#: Settings every arm shares (protocol section 1).
SHARED = {"optimizer": "adam", "lr": 4e-4, "batch_size": 256, "epochs": 8000, "schedule": "log", "n_points": 150}
#: Training seeds of every arm.
SEEDS = list(range(10))
#: Training epochs per dataset where they differ from SHARED (protocol amendment 2: one Fashion-MNIST epoch has
#: 32 steps against 13 on the 12-bit task; 1000 epochs keep the study within a day on 2 cores).
EPOCHS = {"fashion_mnist": 1000}
#: Hidden widths per dataset (protocol section 2).
WIDTHS = {"tishby": [10, 7, 5, 4, 3], "digits": [32, 16, 10, 8], "fashion_mnist": [32, 16, 10, 8]}
#: Widths of the `study-wide` arms on the 12-bit task (protocol amendment 3).
WIDE_WIDTHS = [32, 16, 10, 8, 6]
#: The BNN activation quantizers of the study; magnitude_aware_sign is a kernel quantizer.
SIGN_QUANTIZERS = ("ste_sign", "approx_sign", "swish_sign", "magnitude_aware_sign")
#: Activation bits of the exploratory `study-coarse` DNN arms (not pre-registered; docs/study/README.md).
COARSE_BITS = (2, 4)
#: Part presets, in the order the study runs them.
STUDY_PARTS = ("study-positive", "study-nulls", "study-bnn", "study-matched", "study-resolution", "study-wide",
               "study-digits", "study-fashion")

_EXACT = {"name": "exact"}
_BIN30 = {"name": "binning", "n_bins": 30, "value_range": [-1.0, 1.0]}
_BIN100 = {"name": "binning", "n_bins": 100, "value_range": [-1.0, 1.0]}
_RELU_BINS = [{"name": "binning", "n_bins": 100, "value_range": "data"}, {"name": "binning", "bin_size": 0.07}]
_KDE = [{"name": "kde", "noise_variance": s} for s in (1e-3, 1e-2, 1e-1)]
_KDE_01 = {"name": "kde", "noise_variance": 1e-1}
#: DNN arms of the 12-bit task: both binning resolutions and the kde grid (protocol section 2.1).
_TANH_ESTIMATORS = [_BIN30, _BIN100, *_KDE]


def _arm(name, dataset, *, precision, variant, estimators, batch_norm=False, widths=None, **extra) -> dict:
    return {"name": name, "datasets": [dataset], "precision": precision, "variant": variant,
            "batch_norm": bool(batch_norm), "widths": list(widths or WIDTHS[dataset]), **SHARED,
            "epochs": EPOCHS.get(dataset, SHARED["epochs"]), **extra, "estimators": copy.deepcopy(estimators)}


def _dnn(dataset, activation="tanh", *, batch_norm=False, bits=None, estimators, suffix="", **extra) -> dict:
    name = f"dnn-{activation}" + ("-bn" if batch_norm else "") + (f"-{bits}bit" if bits else "") + suffix
    if bits:
        extra = {"bits": int(bits), **extra}
    return _arm(name, dataset, precision="quantized" if bits else "full", variant=activation,
                activation=activation, batch_norm=batch_norm, estimators=estimators, **extra)


def _bnn(dataset, quantizer, *, batch_norm, estimators, suffix="", **extra) -> dict:
    name = f"bnn-{quantizer}" + ("-bn" if batch_norm else "") + suffix
    input_q = "ste_sign" if quantizer == "magnitude_aware_sign" else quantizer
    # full-precision first and output layers (protocol section 2; pilot (b)): every hidden code is still +-1
    return _arm(name, dataset, precision="binary", variant=quantizer, input_quantizer=input_q,
                kernel_quantizer=quantizer, first_layer="full", last_layer="full", batch_norm=batch_norm,
                estimators=estimators, **extra)


def _parts() -> dict[str, list[dict]]:
    t = "tishby"
    # exact only: on +-1 codes kde with sigma^2 = 0.1 equals exact by construction (codes are 2 apart, kernel
    # e^-20; pilot (c)), a copy rather than a cross-check
    bnn_est = [_EXACT]
    positive = [_dnn(t, estimators=_TANH_ESTIMATORS)]
    nulls = [_dnn(t, "relu", estimators=[*_RELU_BINS, *_KDE]),
             _dnn(t, estimators=_TANH_ESTIMATORS, suffix="-lr0", lr=0.0),
             _bnn(t, "ste_sign", batch_norm=False, estimators=bnn_est, suffix="-lr0", lr=0.0),
             _dnn(t, estimators=_TANH_ESTIMATORS, suffix="-shuffled", labels="shuffled"),
             _bnn(t, "ste_sign", batch_norm=True, estimators=bnn_est, suffix="-shuffled", labels="shuffled")]
    bnn = [_bnn(t, q, batch_norm=bn, estimators=bnn_est) for bn in (False, True) for q in SIGN_QUANTIZERS]
    matched = [positive[0], _dnn(t, batch_norm=True, estimators=_TANH_ESTIMATORS),
               _dnn(t, bits=8, estimators=[_EXACT, _BIN30]),
               _dnn(t, bits=8, batch_norm=True, estimators=[_EXACT, _BIN30]),
               *[a for a in bnn if a["variant"] == "ste_sign"]]
    resolution = [positive[0], nulls[0], matched[1]]
    # the widest BNN that reached >= 95 % training accuracy in pilot (b), with its DNN and 8-bit twins
    wide = {"widths": list(WIDE_WIDTHS)}
    wide_arms = [_dnn(t, estimators=_TANH_ESTIMATORS, suffix="-wide", **wide),
                 _dnn(t, bits=8, estimators=[_EXACT, _BIN30], suffix="-wide", **wide),
                 _bnn(t, "ste_sign", batch_norm=True, estimators=bnn_est, suffix="-wide", **wide)]
    other = {}
    for part, dataset in (("study-digits", "digits"), ("study-fashion", "fashion_mnist")):
        other[part] = [_dnn(dataset, estimators=[_BIN30, _KDE_01]),
                       _dnn(dataset, bits=8, estimators=[_EXACT, _BIN30]),
                       *[_bnn(dataset, q, batch_norm=True, estimators=[_EXACT]) for q in SIGN_QUANTIZERS]]
    # exploratory, added after the pre-registered parts had run (not part of `study`): DNNs whose codes are
    # coarse enough for `exact` where the 8-bit codes give every input its own code
    coarse = [_dnn(t, bits=b, estimators=[_EXACT, _BIN30], suffix=suffix, **extra) for b in COARSE_BITS
              for suffix, extra in (("", {}), ("-shuffled", {"labels": "shuffled"}))]
    return {"study-positive": positive, "study-nulls": nulls, "study-bnn": bnn, "study-matched": matched,
            "study-resolution": resolution, "study-wide": wide_arms, **other, "study-coarse": coarse}


_DESCRIPTIONS = {
    "study": "The whole study (docs/study/protocol.md): controls, BNN arms, matched arms, three datasets, 10 seeds.",
    "study-positive": "Study part: the positive control, the tanh DNN of Shwartz-Ziv & Tishby / Saxe et al. "
                      "(12-bit task), 10 seeds.",
    "study-nulls": "Study part: negative and null controls (ReLU DNN; learning rate 0; shuffled labels), 10 seeds.",
    "study-bnn": "Study part: BNNs with and without BatchNorm for the four sign quantizers, 10 seeds.",
    "study-matched": "Study part: DNN, DNN+BN, 8-bit DNNs and ste_sign BNNs with identical training, 10 seeds.",
    "study-resolution": "Study part: the 12-bit DNN arms under kde sigma^2 1e-3/1e-2/1e-1 and binning 30/100 bins.",
    "study-wide": "Study part: 12-bit task, 32-16-10-8-6: a BNN with BN that trains to >= 95 %, its DNN and "
                  "8-bit twins, 10 seeds.",
    "study-digits": "Study part: scikit-learn digits, DNN, 8-bit DNN and BNNs with BN, 10 seeds.",
    "study-fashion": "Study part: Fashion-MNIST (offline, 10 000-image pool), DNN, 8-bit DNN, BNNs with BN.",
    "study-coarse": "Exploratory (not pre-registered, not in `study`): 2-bit and 4-bit tanh DNNs on the 12-bit task, "
                    "whose codes are coarse enough for exact where the 8-bit codes saturate, and their "
                    "shuffled-label controls, 10 seeds.",
}

_SOURCE = {
    "protocol": "docs/study/protocol.md (pre-registered); pilots in docs/study/pilots.md",
    "training": "Adam 4e-4, batch 256, 8000 epochs for every arm (Saxe et al. 2018; Shwartz-Ziv & Tishby "
                "2017); the BNN arms use the same settings so that the comparison is matched",
    "bnn": "Larq QuantDense, full-precision first and output layers, BatchNorm with and without, the four "
           "sign quantizers; pilot (b) in docs/study/pilots.md",
    "schedule": "150 log-spaced recorded epochs shared by all arms: consecutive recorded epochs differ by at "
                "most 10 % from epoch 10 on",
    "quantized": "8-bit tanh activations on [-1, 1] (Larq DoReFa mapped to tanh's range; Lorenzen, Igel & "
                 "Nielsen 2022), measured with exact",
    "datasets": "12-bit task (4096 patterns), scikit-learn digits (1797), Fashion-MNIST test images (10 000, "
                "Debian package dataset-fashion-mnist); seeded 80/20 split; MI over the whole pool, with "
                "planes on the training and held-out rows computed from the same store",
}


def _preset(name: str, models: list[dict]) -> dict:
    datasets = list(dict.fromkeys(d for m in models for d in m["datasets"]))
    return {"name": name, "description": _DESCRIPTIONS[name], "source": dict(_SOURCE),
            "datasets": datasets,
            "dataset_options": {"fashion_mnist": {"split": "test", "download": False}} if "fashion_mnist" in
            datasets else {},
            "split": {"test_fraction": 0.2, "seed": 0}, "analysis": "all", "seeds": list(SEEDS),
            "models": copy.deepcopy(models)}


def study_presets() -> dict[str, dict]:
    """``{"study": ..., "study-positive": ..., ...}``: fresh dicts (see the module docstring)."""
    parts = _parts()
    out = {name: _preset(name, parts[name]) for name in STUDY_PARTS}
    union: dict[tuple, dict] = {}
    for name in STUDY_PARTS:
        for model in parts[name]:
            union.setdefault((model["datasets"][0], model["name"]), model)
    out["study"] = _preset("study", list(union.values()))
    out["study-coarse"] = _preset("study-coarse", parts["study-coarse"])
    return out
