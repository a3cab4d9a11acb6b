"""Experiment presets: plain, documented dict configs for ``python -m experiments.run``.

A preset says *what* to train and *how* to measure it; nothing in it is code, so a user can copy one,
edit values and pass the dict to :func:`experiments.run.run_experiment` (or register it in
:data:`PRESETS`).  Every preset has the same keys:

``name``, ``description``
    What the preset is for.
``source``
    Where each value comes from (paper or measurement); see the README.
``datasets``
    Dataset names understood by :func:`experiments.datasets.load`; ``dataset_options`` maps a name to
    keyword options of ``load`` (e.g. ``{"mnist": {"path": "..."}}``).
``split``
    ``{"test_fraction": f, "seed": s}``: the seeded train/test split of each dataset.
``analysis``
    Which samples the information plane is measured on: ``"all"`` (Shwartz-Ziv & Tishby: every one of
    the 4096 patterns) or ``"test"`` (Saxe et al. on MNIST: the 10 000 test images).
``seeds``
    Training seeds; one run (and one activation store) per (dataset, model, seed).
``models``
    List of model configs, each::

        {"name": "bnn-ste_sign",           # unique within the preset, part of the run id
         "precision": "binary",            # "full" (Keras Dense) or "binary" (Larq QuantDense)
         "variant": "ste_sign",            # activation (full) or quantizer (binary): the plane's `variant`
         "activation": "tanh",             # full precision only
         "input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",   # binary only
         "batch_norm": False,
         "widths": [10, 7, 5, 4, 3],       # hidden widths; the input and output widths come from the data
         "optimizer": "adam", "lr": 4e-4, "batch_size": 512, "epochs": 8000,
         "schedule": "log", "n_points": 270,   # recorded epochs: ibtoolkit.schedules.epoch_schedule(schedule,
                                               # epochs, n_points), e.g. "log", "all", "every:k", "dense:100,log"
         "estimators": [{"name": "binning", ...params}, ...]}   # default estimators of this model

Estimators are given as dicts accepted by :func:`ibtoolkit.get_estimator` (``name`` plus keyword
parameters), so the parameters end up verbatim in every result row.
"""
from __future__ import annotations

import copy

__all__ = ["PRESETS", "get_preset", "available_presets", "estimator_defaults", "DEFAULT_PRESET"]

DEFAULT_PRESET = "quick"

#: The 12-bit network of Shwartz-Ziv & Tishby (2017): 12-10-7-5-4-3-2.
TISHBY_WIDTHS = [10, 7, 5, 4, 3]
#: Saxe et al. (2018), MNIST: 784-1024-20-20-20-10.
SAXE_MNIST_WIDTHS = [1024, 20, 20, 20]

# -- estimator defaults (the numerical conventions of the estimators) ---------------
#: binning of bounded (tanh) activations: 30 equal bins on [-1, 1], Shwartz-Ziv & Tishby (2017).
BINNING_TANH = {"name": "binning", "n_bins": 30, "value_range": [-1.0, 1.0]}
#: binning of unbounded (ReLU) activations: 100 bins between the run's min and max, Saxe et al. (2018).
BINNING_RELU = {"name": "binning", "n_bins": 100, "value_range": "data"}
#: binning with a fixed bin width, Saxe et al. (2018) on MNIST (0.5).
BINNING_WIDTH_05 = {"name": "binning", "bin_size": 0.5}
#: Kolchinsky-Tracey KDE bounds, noise variance 0.1 (Saxe et al. 2018; Kolchinsky & Tracey 2017).
KDE = {"name": "kde", "noise_variance": 0.1}
#: Kraskov-Stoegbauer-Grassberger kNN, k = 3 (Kraskov et al. 2004).
KSG = {"name": "ksg", "k": 3}
#: exact plug-in entropies of the +-1 codes of a binary layer (the ground truth for BNNs).
EXACT = {"name": "exact"}


def estimator_defaults(precision: str, activation: str = "tanh") -> list[dict]:
    """Default estimators of a model: ``exact`` plus continuous cross-checks for BNNs; binning
    (bounded or data-range), KDE and KSG for full-precision nets."""
    if precision == "binary":
        return [dict(EXACT), dict(KDE), dict(KSG)]
    binning = BINNING_TANH if activation in ("tanh", "sigmoid", "hard_tanh") else BINNING_RELU
    return [dict(binning), dict(KDE), dict(KSG)]


def _dnn(activation: str, *, widths, optimizer="adam", lr=4e-4, batch_size=512, epochs=8000,
         schedule="log", n_points=270, estimators=None, name=None) -> dict:
    return {"name": name or f"dnn-{activation}", "precision": "full", "variant": activation,
            "activation": activation, "batch_norm": False, "widths": list(widths),
            "optimizer": optimizer, "lr": lr, "batch_size": batch_size, "epochs": epochs,
            "schedule": schedule, "n_points": n_points,
            "estimators": estimators if estimators is not None else estimator_defaults("full", activation)}


def _bnn(quantizer: str, *, widths, optimizer="adam", lr=1e-3, batch_size=256, epochs=8000,
         schedule="dense:100,log", n_points=270, estimators=None, name=None) -> dict:
    # magnitude_aware_sign is a kernel quantizer (it scales the signs); activations keep ste_sign.
    input_q = "ste_sign" if quantizer == "magnitude_aware_sign" else quantizer
    return {"name": name or f"bnn-{quantizer}", "precision": "binary", "variant": quantizer,
            "input_quantizer": input_q, "kernel_quantizer": quantizer, "batch_norm": False,
            "widths": list(widths), "optimizer": optimizer, "lr": lr, "batch_size": batch_size,
            "epochs": epochs, "schedule": schedule, "n_points": n_points,
            "estimators": estimators if estimators is not None else estimator_defaults("binary")}


_TISHBY_SOURCE = {
    "dataset": "12-bit dataset of Shwartz-Ziv & Tishby (2017), 4096 patterns, 80/20 seeded split; "
               "MI over all 4096 patterns (their setup)",
    "dnn": "12-10-7-5-4-3-2 tanh, Adam lr 4e-4, batch 512, 8000 epochs, ~270 log-spaced recorded epochs "
           "(Shwartz-Ziv & Tishby 2017; Saxe et al. 2018 used batch 256 and 10 000 epochs)",
    "relu": "ReLU control of Saxe et al. (2018): same net, binning with 100 bins between the run's min and "
            "max, KDE noise variance 0.1, kNN",
    "bnn": "the study (Raj, Nayak & Kalyani 2020) publishes no hyper-parameters: same widths, Larq QuantDense "
           "with ste_sign on inputs and kernels; Adam on latent weights lr 1e-3 (a sensible start), batch 256, "
           "8000 epochs; exact MI on the +-1 codes, every epoch up to 100 then log-spaced",
    "quantizers": "approx_sign, swish_sign (Larq default beta = 5), magnitude_aware_sign (kernels): "
                  "the study's BNN activation sweep; all share sign's forward map",
    "estimators": "binning 30 bins on [-1, 1] (Shwartz-Ziv & Tishby), KDE sigma^2 = 0.1 (Kolchinsky & "
                  "Tracey; Saxe et al.), KSG k = 3 (Kraskov et al. 2004), exact on +-1 codes",
}

PRESETS: dict[str, dict] = {
    "tiny": {
        "name": "tiny",
        "description": "Smoke test for the test suite: two tiny nets on the 12-bit data, a few epochs; seconds.",
        "source": {"all": "not a scientific setting: sizes chosen only so the whole pipeline runs in seconds"},
        "datasets": ["tishby"], "dataset_options": {},
        "split": {"test_fraction": 0.2, "seed": 0},
        "analysis": "all",
        "seeds": [0],
        "models": [
            _dnn("tanh", widths=[4, 3], lr=1e-2, batch_size=512, epochs=4, schedule="all", n_points=5,
                 estimators=[dict(BINNING_TANH)]),
            _bnn("ste_sign", widths=[4, 3], lr=1e-2, batch_size=512, epochs=4, schedule="all", n_points=5,
                 estimators=[dict(EXACT)]),
        ],
    },
    "quick": {
        "name": "quick",
        "description": "The default: DNN (tanh) vs BNN (ste_sign) on the 12-bit data, one seed, enough epochs "
                       "to see the fitting and compression phases; the whole run (training, the default "
                       "estimators, plots, report) takes a few minutes on 2 CPU cores.",
        "source": {**_TISHBY_SOURCE,
                   "quick": "cut to fit a few minutes on 2 CPU cores: 1200 (DNN) / 1000 (BNN) epochs instead of "
                            "8000, learning rate 2e-3 (DNN 4e-4, BNN 1e-3 in `paper`), BNN batch 512 (256 in "
                            "`paper`), 40 / 50 recorded epochs (BNN: every epoch up to 20, then log-spaced); "
                            "measured wall time in the README"},
        "datasets": ["tishby"], "dataset_options": {},
        "split": {"test_fraction": 0.2, "seed": 0},
        "analysis": "all",
        "seeds": [0],
        "models": [
            _dnn("tanh", widths=TISHBY_WIDTHS, lr=2e-3, batch_size=512, epochs=1200, n_points=40),
            _bnn("ste_sign", widths=TISHBY_WIDTHS, lr=2e-3, batch_size=512, epochs=1000, schedule="dense:20,log",
                 n_points=50),
        ],
    },
    "paper": {
        "name": "paper",
        "description": "The study on the 12-bit data: DNN tanh and the ReLU control vs BNNs with each of Larq's "
                       "sign quantizers, 8000 epochs, log schedule, 5 seeds.",
        "source": _TISHBY_SOURCE,
        "datasets": ["tishby"], "dataset_options": {},
        "split": {"test_fraction": 0.2, "seed": 0},
        "analysis": "all",
        "seeds": [0, 1, 2, 3, 4],
        "models": [
            _dnn("tanh", widths=TISHBY_WIDTHS),
            _dnn("relu", widths=TISHBY_WIDTHS),
            *[_bnn(q, widths=TISHBY_WIDTHS)
              for q in ("ste_sign", "approx_sign", "swish_sign", "magnitude_aware_sign")],
        ],
    },
    "paper-digits": {
        "name": "paper-digits",
        "description": "A third dataset: scikit-learn's 8x8 digits (1797 images, 64 inputs, 10 classes), "
                       "DNN tanh vs BNN ste_sign, narrow layers so 2^width stays below N.",
        "source": {"dataset": "scikit-learn digits (real data, offline), 80/20 seeded split, MI over all 1797",
                   "network": "64-32-12-8-6-10: a funnel like Shwartz-Ziv & Tishby's, with the last hidden "
                              "layers narrow enough (2^width << 1797) for exact and plug-in MI to be meaningful",
                   "training": "Adam lr 1e-3, batch 128, 2000 epochs (no published setting; chosen here)",
                   "bnn_inputs": "pixels scaled to [0, 1] and thresholded at 0.5 to +-1 (some images then "
                                 "coincide, so log2 N of the BNN's analysis set is slightly lower)",
                   "estimators": _TISHBY_SOURCE["estimators"]},
        "datasets": ["digits"], "dataset_options": {},
        "split": {"test_fraction": 0.2, "seed": 0},
        "analysis": "all",
        "seeds": [0, 1, 2],
        "models": [
            _dnn("tanh", widths=[32, 12, 8, 6], lr=1e-3, batch_size=128, epochs=2000, n_points=150),
            _bnn("ste_sign", widths=[32, 12, 8, 6], lr=1e-3, batch_size=128, epochs=2000, n_points=150),
        ],
    },
    "paper-mnist": {
        "name": "paper-mnist",
        "description": "Saxe et al. (2018) MNIST setting: 784-1024-20-20-20-10, SGD lr 1e-3, batch 128; MI over "
                       "the 10 000 test images. Needs the MNIST files (see experiments.datasets).",
        "source": {"dataset": "MNIST, 60 000 train / 10 000 test (the standard split); MI over the 10 000 test "
                              "images (Saxe et al. 2018)",
                   "network": "784-1024-20-20-20-10 (Saxe et al. 2018)",
                   "training": "SGD lr 1e-3, batch 128 (Saxe et al. 2018); 500 epochs is a choice made here",
                   "estimators": "DNN: KDE sigma^2 = 0.1 and binning with bin width 0.5 (Saxe et al. 2018); "
                                 "BNN: exact is the truth but saturates at log2 10000 = 13.3 bits wherever "
                                 "2^width >> N (every layer here): read its I(X;T) with the saturation check; "
                                 "KDE as a cross-check. KSG omitted at width 1024 for cost."},
        "datasets": ["mnist"], "dataset_options": {},
        "split": {"test_fraction": None, "seed": 0},
        "analysis": "test",
        "seeds": [0, 1, 2],
        "models": [
            _dnn("tanh", widths=SAXE_MNIST_WIDTHS, optimizer="sgd", lr=1e-3, batch_size=128, epochs=500,
                 n_points=100, estimators=[dict(KDE), dict(BINNING_WIDTH_05)]),
            _bnn("ste_sign", widths=SAXE_MNIST_WIDTHS, optimizer="sgd", lr=1e-3, batch_size=128, epochs=500,
                 schedule="log", n_points=100, estimators=[dict(EXACT), dict(KDE)]),
        ],
    },
}


def _register_study() -> None:
    """Add the study's presets (:mod:`experiments.study_presets`, docs/study/protocol.md) to :data:`PRESETS`."""
    from experiments.study_presets import study_presets

    PRESETS.update(study_presets())


_register_study()


def available_presets() -> list[str]:
    """Names of the built-in presets, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> dict:
    """A deep copy of preset ``name`` (edit it freely).

    Raises
    ------
    ValueError
        Unknown name; the message lists the available presets.
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(available_presets())}")
    return copy.deepcopy(PRESETS[name])
