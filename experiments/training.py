"""Train one (dataset, model, seed) run into an activation store.

A *run config* is a plain dict made by :func:`expand_runs` from a preset (see
:mod:`experiments.presets`)::

    {"run_id": "tishby-bnn-ste_sign-s0", "dataset": "tishby", "dataset_options": {},
     "split": {"test_fraction": 0.2, "seed": 0}, "analysis": "all", "seed": 0,
     "model": {...one model dict of the preset...}}

:func:`train_run` sets every seed (Python, NumPy, TensorFlow) inside, clears the Keras session, builds
the data (BNN inputs mapped to +-1 explicitly: Larq's sign maps 0 to +1, so {0,1} inputs would all
become +1), builds and fits the model with :class:`ibtoolkit.IBCallback` writing to
``out_dir/runs/<run_id>``, and records the run metadata (dataset, model, precision, variant, seed and
the training key of the run config) as the store's ``manifest["run"]`` (``IBCallback(run=...)``) so
every information-plane row carries it.  Training is skipped when that store is already complete
and was made from the same config.
"""
from __future__ import annotations

import copy
import logging
import pathlib
import shutil

import numpy as np

__all__ = ["expand_runs", "run_id", "train_run", "prepare_data", "build_model", "store_is_complete",
           "run_directory", "training_key", "set_seeds", "continuable", "clear_for_new_run"]

log = logging.getLogger("experiments.training")


# -- run configs ---------------------------------------------------------------------------------
def run_id(dataset: str, model_name: str, seed: int) -> str:
    """The run identifier, ``<dataset>-<model>-s<seed>``: also the store directory name."""
    return f"{dataset}-{model_name}-s{int(seed)}"


def _model_datasets(model: dict, datasets) -> list:
    """The preset's datasets this model runs on: all of them, or those its optional ``datasets`` key
    names (a ``--dataset`` choice that leaves none of them out skips the model)."""
    own = model.get("datasets")
    if own is None:
        return list(datasets)
    if isinstance(own, str) or not all(isinstance(d, str) for d in own):
        raise ValueError(f"model {model.get('name')!r}: 'datasets' must be a list of dataset names, got {own!r}")
    return [d for d in datasets if d in own]


def expand_runs(preset: dict) -> list[dict]:
    """One run config per (dataset, model, seed) of ``preset``, in that nesting order.

    A model with a ``datasets`` key runs on those datasets only (so one preset can give a model other
    widths on another dataset, under the same name); (dataset, model name) pairs must be unique.
    """
    pairs = [(d, m["name"]) for m in preset["models"] for d in _model_datasets(m, preset["datasets"])]
    if len(set(pairs)) != len(pairs):
        dup = sorted({p for p in pairs if pairs.count(p) > 1})
        raise ValueError(f"model names in a preset must be unique per dataset, got duplicates {dup}")
    runs = []
    for dataset in preset["datasets"]:
        for model in preset["models"]:
            if dataset not in _model_datasets(model, preset["datasets"]):
                continue
            for seed in preset["seeds"]:
                runs.append({
                    "run_id": run_id(dataset, model["name"], seed),
                    "dataset": dataset,
                    "dataset_options": copy.deepcopy(preset.get("dataset_options", {}).get(dataset, {})),
                    "split": dict(preset.get("split", {"test_fraction": 0.2, "seed": 0})),
                    "analysis": preset.get("analysis", "all"),
                    "seed": int(seed),
                    "model": copy.deepcopy(model),
                })
    return runs


def run_directory(out_dir, run_config) -> pathlib.Path:
    """``out_dir/runs/<run_id>``."""
    return pathlib.Path(out_dir) / "runs" / run_config["run_id"]


def training_key(run_config) -> dict:
    """The parts of a run config that determine the trained store (estimators excluded)."""
    model = {k: v for k, v in run_config["model"].items() if k != "estimators"}
    return {"dataset": run_config["dataset"], "dataset_options": run_config.get("dataset_options", {}),
            "split": run_config.get("split"), "analysis": run_config.get("analysis"),
            "seed": run_config["seed"], "model": model}


def store_is_complete(directory, run_config=None) -> bool:
    """True when ``directory`` holds a store with status ``complete`` (and, if ``run_config`` is
    given, one trained from the same dataset/model/seed/epochs settings)."""
    directory = pathlib.Path(directory)
    if not (directory / "manifest.json").exists():
        return False
    from ibtoolkit.store import StoreError, open_store

    try:
        store = open_store(directory)
    except StoreError as exc:
        log.warning("existing store %s is unreadable (%s); it will be retrained", directory, exc)
        return False
    if store.status != "complete":
        return False
    if run_config is None:
        return True
    return _trained_with(store, run_config)


def _trained_with(store, run_config) -> bool:
    """The store was recorded from the training settings of ``run_config`` (:func:`training_key`)."""
    from ibtoolkit.store.format import canonical_json

    recorded = (store.run or {}).get("training")
    return recorded is not None and canonical_json(recorded) == canonical_json(training_key(run_config))


# -- data and model ------------------------------------------------------------------------------
def prepare_data(run_config) -> dict:
    """Load and split the dataset of a run; preprocess the inputs explicitly.

    Images are flattened and 8-bit values scaled to [0, 1] (:func:`experiments.datasets.scale`).
    Binary models get +-1 inputs: {0, 1} data through :func:`experiments.datasets.to_pm1`, other
    data in [0, 1] thresholded at 0.5 (``2 * (x > 0.5) - 1``), since a sign quantizer would send
    every non-negative input to +1.  ``split["test_fraction"]`` None means the dataset's standard
    split (``load(name, split="train")`` / ``split="test"``, e.g. MNIST's 60 000 / 10 000).

    Returns a dict with ``x_train, y_train, x_test, y_test`` (what ``fit`` sees), ``x_analysis,
    y_analysis`` (the samples the information plane is measured on) and ``info``.
    """
    from experiments import datasets

    name, options = run_config["dataset"], dict(run_config.get("dataset_options", {}))
    split = run_config.get("split") or {}
    binary = run_config["model"]["precision"] == "binary"  # k-bit "quantized" nets take inputs as given
    if split.get("test_fraction") is None:
        train, test = (datasets.load(name, **{**options, "split": part}) for part in ("train", "test"))
        x_train, y_train, x_test, y_test = train.x, train.y, test.x, test.y
        info = dict(test.info)
    else:
        data = datasets.load(name, **options)
        train_idx, test_idx = datasets.train_test_split(data, split["test_fraction"], split.get("seed", 0))
        x_train, y_train, x_test, y_test = data.x[train_idx], data.y[train_idx], data.x[test_idx], data.y[test_idx]
        info = dict(data.info)
    x_train, x_test = (_preprocess(x, binary) for x in (x_train, x_test))
    y_train, y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
    labels = run_config["model"].get("labels", "true")
    if labels == "shuffled":  # a null control: one fixed permutation of the labels across the pool
        y_all = _shuffled_labels(np.concatenate([y_train, y_test]))
        y_train, y_test = y_all[:len(y_train)], y_all[len(y_train):]
    elif labels != "true":
        raise ValueError(f"model {run_config['model'].get('name')!r}: labels must be 'true' or 'shuffled', "
                         f"got {labels!r}")
    analysis = run_config.get("analysis", "all")
    if analysis == "all":
        x_an, y_an = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
        if split.get("test_fraction") is not None:  # back to the dataset's own order
            order = np.argsort(np.concatenate([train_idx, test_idx]), kind="stable")
            x_an, y_an = x_an[order], y_an[order]
    elif analysis == "test":
        x_an, y_an = x_test, y_test
    else:
        raise ValueError(f"analysis must be 'all' or 'test', got {analysis!r}")
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "x_analysis": np.ascontiguousarray(x_an), "y_analysis": y_an, "info": info}


#: Seed of the label permutation of ``labels: "shuffled"`` runs (the same for every training seed).
SHUFFLE_SEED = 0x5EED


def _shuffled_labels(y: np.ndarray) -> np.ndarray:
    """``y`` permuted by ``default_rng(SHUFFLE_SEED).permutation``: same label counts, no relation to x.

    The network trains on these labels and I(T;Y) is measured against them (the shuffled-labels
    control of docs/study/protocol.md).  One permutation for every training seed of an arm (as a
    fixed random labelling in Zhang et al. 2017), so the seeds differ only in initialisation and
    batch order, like the seeds of every other arm, and can train stacked on the same data.
    """
    return y[np.random.default_rng(SHUFFLE_SEED).permutation(len(y))]


def _preprocess(x, binary: bool) -> np.ndarray:
    from experiments import datasets

    x = datasets.flatten(x)
    if x.dtype == np.uint8 and x.max(initial=0) > 1:
        x = datasets.scale(x, 255.0)
    x = np.asarray(x, dtype=np.float32)
    if not binary:
        return x
    if np.isin(x, (0.0, 1.0)).all():
        return datasets.to_pm1(x)
    return np.where(x > 0.5, 1.0, -1.0).astype(np.float32)


def build_model(model_cfg: dict, *, input_dim: int, n_classes: int, seed: int):
    """Build and compile the model of ``model_cfg`` (see :mod:`experiments.presets`)."""
    import tensorflow as tf

    from ibtoolkit import models

    kwargs = {"widths": tuple(model_cfg["widths"]), "n_classes": n_classes, "input_dim": input_dim,
              "precision": model_cfg["precision"], "batch_norm": model_cfg.get("batch_norm", False),
              "seed": seed}
    if model_cfg["precision"] == "binary":
        kwargs["input_quantizer"] = model_cfg.get("input_quantizer", "ste_sign")
        kwargs["kernel_quantizer"] = model_cfg.get("kernel_quantizer", "ste_sign")
        for key in ("first_layer", "last_layer"):
            if key in model_cfg:
                kwargs[key] = model_cfg[key]
    else:
        kwargs["activation"] = model_cfg.get("activation", "tanh")
    if model_cfg["precision"] == "quantized":
        kwargs["bits"] = int(model_cfg.get("bits", 8))
        if model_cfg.get("value_range") is not None:
            kwargs["value_range"] = tuple(model_cfg["value_range"])
    model = models.mlp(**kwargs)
    name = model_cfg.get("optimizer", "adam").lower()
    optimizers = {"adam": tf.keras.optimizers.Adam, "sgd": tf.keras.optimizers.SGD,
                  "rmsprop": tf.keras.optimizers.RMSprop}
    if name not in optimizers:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(optimizers)}")
    model.compile(optimizer=optimizers[name](learning_rate=float(model_cfg["lr"])),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def set_seeds(seed: int, threads: int | None) -> None:
    """Seed Python, numpy and TensorFlow with ``seed`` (Keras's shuffle and initialisers) and, for a sweep
    worker, give TensorFlow ``threads`` intra- and inter-op threads (once per process)."""
    import tensorflow as tf

    already = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    if threads is not None and already != (threads, threads):  # a reused sweep worker is already set
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError as exc:  # the TF runtime of this process is already initialised
            log.warning("could not limit TensorFlow to %d thread(s) in this process: %s", threads, exc)
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(int(seed))  # Python, NumPy and TensorFlow


# -- the run -------------------------------------------------------------------------------------
def train_run(run_config: dict, out_dir, *, resume: bool = True, threads: int | None = None,
              verbose: int = 0, checkpoint_seconds: float = 30.0, callbacks=()) -> pathlib.Path:
    """Train one run into ``out_dir/runs/<run_id>`` and return that store directory.

    Parameters
    ----------
    run_config : dict
        One element of :func:`expand_runs`.
    out_dir : path
        Output root; the store goes to ``out_dir/runs/<run_id>``, the checkpoint to
        ``out_dir/checkpoints/<run_id>`` (:mod:`experiments.resume`).
    resume : bool
        Skip training when that store is already complete and was trained from the same settings;
        continue an interrupted store of the same settings from its checkpoint (weights, optimizer
        state, epoch; the shuffling order is a function of seed and epoch), or from the seeded
        initial weights when there is none: epochs the store already holds are trained again, not
        recorded twice, and the store says so (:class:`ibtoolkit.IBCallback`).  A store of other
        settings, or a diverged one, is moved to ``out_dir/replaced/`` (never deleted) and trained
        anew.  ``resume=False`` replaces any store.
    threads : int, optional
        Limit TensorFlow to this many intra/inter-op threads (for parallel workers).
    checkpoint_seconds : float
        Least time between checkpoints (taken after committed epochs, and at the end).
    callbacks : sequence of Keras callbacks
        Extra callbacks, after the recorder and the checkpoint.
    """
    from experiments.resume import checkpoint_directory

    directory = run_directory(out_dir, run_config)
    if resume and store_is_complete(directory, run_config):
        log.info("skip training %s: store complete", run_config["run_id"])
        return directory
    continuing = resume and continuable(directory, run_config)
    checkpoints = checkpoint_directory(out_dir, run_config["run_id"])
    if not continuing:
        clear_for_new_run(directory, checkpoints, out_dir, keep=resume)
    directory.parent.mkdir(parents=True, exist_ok=True)
    return _fit_run(run_config, directory, checkpoints, continuing, threads, verbose, checkpoint_seconds,
                    list(callbacks))


def continuable(directory: pathlib.Path, run_config) -> bool:
    """An interrupted store of the same training settings: continue it instead of replacing it."""
    if not (directory / "manifest.json").exists():
        return False
    from ibtoolkit.store import StoreError, open_store

    try:
        store = open_store(directory)
    except StoreError:
        return False
    return _trained_with(store, run_config) and store.status == "interrupted" and store.last_epoch is not None


def clear_for_new_run(directory: pathlib.Path, checkpoints: pathlib.Path, out_dir, keep: bool) -> None:
    """Make room for a new run: the old store is moved to ``out_dir/replaced/`` (``keep``, i.e. with
    --resume: nothing committed is lost) or deleted; its checkpoint is deleted."""
    import time

    if checkpoints.exists():
        shutil.rmtree(checkpoints)
    if not directory.exists():
        return
    if not (directory / "manifest.json").exists() and any(directory.iterdir()):
        raise ValueError(f"{directory} exists and is not an activation store; move it away or "
                         f"choose another --out")
    if keep:
        aside = pathlib.Path(out_dir) / "replaced" / f"{directory.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        log.warning("store %s is not continued (other settings, diverged, or interrupted without a checkpoint); "
                    "moved to %s, training anew", directory, aside)
        directory.rename(aside)
    else:
        log.info("replacing store %s", directory)
        shutil.rmtree(directory)


def _fit_run(run_config, directory, checkpoints, continuing, threads, verbose, checkpoint_seconds, extra):
    import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
    import tensorflow as tf  # noqa: F401

    from experiments.resume import TrainingCheckpoint, epoch_batches, restore_checkpoint
    from ibtoolkit.callback import IBCallback
    from ibtoolkit.schedules import epoch_schedule

    seed = int(run_config["seed"])
    set_seeds(seed, threads)
    data = prepare_data(run_config)
    model_cfg = run_config["model"]
    n_classes = int(max(data["y_train"].max(), data["y_test"].max()) + 1)
    model = build_model(model_cfg, input_dim=data["x_train"].shape[1], n_classes=n_classes, seed=seed)
    initial = 0
    if continuing:  # no checkpoint: the seeded initial weights are the state of epoch 0
        initial = restore_checkpoint(model, checkpoints) or 0
        log.info("continuing %s from epoch %d", run_config["run_id"], initial)
    run_meta = {"run_id": run_config["run_id"], "dataset": run_config["dataset"], "model": model_cfg["name"],
                "precision": model_cfg["precision"], "variant": model_cfg["variant"], "seed": seed,
                "training": training_key(run_config)}
    dataset_meta = {"name": run_config["dataset"], "seed": seed, "n_train": int(len(data["y_train"])),
                    "n_test": int(len(data["y_test"])), "analysis": run_config.get("analysis", "all"),
                    "source": str(data["info"].get("source", ""))}
    callback = IBCallback(data["x_analysis"], data["y_analysis"], directory=directory,
                          schedule=model_cfg.get("schedule", "log"), n_points=int(model_cfg.get("n_points", 100)),
                          dataset=dataset_meta, run=run_meta)
    checkpoint = TrainingCheckpoint.callback(checkpoints, callback, every_seconds=checkpoint_seconds)
    # Validate only at the recorded epochs (Keras epochs are 1-based, like the store's): the store keeps
    # the metrics of recorded epochs only, and validating every epoch costs ~3/4 of the fit time here.
    epochs = int(model_cfg["epochs"])
    recorded = epoch_schedule(model_cfg.get("schedule", "log"), epochs, int(model_cfg.get("n_points", 100)))
    batches, steps = epoch_batches(data["x_train"], data["y_train"], int(model_cfg["batch_size"]), seed, initial,
                                   epochs)
    model.fit(batches, steps_per_epoch=steps, initial_epoch=initial, epochs=epochs,
              validation_data=(data["x_test"], data["y_test"]),
              validation_freq=[int(e) for e in recorded if e >= 1] or 1, verbose=verbose,
              callbacks=[callback, checkpoint, *extra])
    return directory
