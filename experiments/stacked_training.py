"""Train the seeds of one (dataset, model) as one stacked model (:func:`ibtoolkit.models.stack`).

``python -m experiments.run`` groups the runs of a preset by (dataset, model) and cuts each group's
seeds into chunks (:func:`training_groups`); a chunk is one sweep task (:func:`train_group`), which
trains its members side by side and writes the same stores as one-by-one training
(:func:`experiments.training.train_run`): ``out/runs/<run_id>`` with the same run metadata (so
``--resume`` recognises them), dataset description, schedule and metrics.

What differs from one-by-one training (``--no-stack``): member s (seed s) starts from exactly the
weights ``train_run`` would build for seed s and gets its own optimizer state and loss term, but its
batches come from its own seeded permutation of the rows under one Keras shuffle for the chunk, so
its trajectory is a different (equally valid) random draw than the unstacked run of the same seed;
see ``docs/stacking.md``.  A chunk with one run left is trained by ``train_run`` itself, and so is
a run that ``--resume`` continues from its checkpoint (an interrupted store of the same settings
with a checkpoint, i.e. one trained alone); the other runs of the chunk start anew, stacked: a
stacked chunk keeps no checkpoint, so a chunk killed mid-way restarts (its partial stores are moved
to ``replaced/``, nothing is deleted).  The
stacked training step is XLA-compiled (``jit_compile=True``), which Larq's quantizers allow.

Chunk size: at most :data:`MAX_MEMBERS` members and the members' stacked training and validation
inputs (``(N, S, D)`` float32 each) within :data:`MEMORY_BUDGET` bytes.
"""
from __future__ import annotations

import logging
import pathlib

from experiments import training
from experiments.resume import checkpoint_directory, has_checkpoint

__all__ = ["training_groups", "train_group", "MAX_MEMBERS", "MEMORY_BUDGET"]

log = logging.getLogger("experiments.training")

MAX_MEMBERS = 20
MEMORY_BUDGET = 1 << 30  # bytes of stacked training + validation inputs per chunk


def _group_key(cfg) -> str:
    """Runs that can share a stack: everything of the training key but the seed."""
    from ibtoolkit.store.format import canonical_json

    key = training.training_key(cfg)
    key.pop("seed")
    return canonical_json(key)


#: (samples, features) of the known datasets; others are planned as MNIST-sized (the largest here)
_SIZES = {"tishby": (4096, 12), "digits": (1797, 64), "mnist": (70_000, 784), "fashion_mnist": (70_000, 784)}


def _member_bytes(cfg) -> int:
    """Bytes one member adds to a chunk: its copy of the training and validation inputs, float32."""
    n, d = _SIZES.get(cfg["dataset"], _SIZES["mnist"])
    limit = (cfg.get("dataset_options") or {}).get("limit")
    return 4 * int(min(n, limit or n)) * int(d)


def training_groups(runs, stack: bool = True, max_members: int = MAX_MEMBERS,
                    budget: int = MEMORY_BUDGET) -> list[list[dict]]:
    """The training tasks of a sweep: with ``stack``, the runs of each (dataset, model) in chunks of at
    most ``max_members`` seeds within ``budget`` bytes; without, one run per task.  Run order is kept."""
    if not stack:
        return [[cfg] for cfg in runs]
    groups: dict[str, list[dict]] = {}
    for cfg in runs:
        groups.setdefault(_group_key(cfg), []).append(cfg)
    chunks = []
    for members in groups.values():
        size = max(1, min(int(max_members), int(budget) // max(1, _member_bytes(members[0]))))
        chunks.extend(members[i:i + size] for i in range(0, len(members), size))
    return chunks


def train_group(run_configs, out_dir, *, resume: bool = True, threads: int | None = None,
                verbose: int = 0) -> list[str]:
    """Train the runs of one chunk (same dataset and model, different seeds) stacked; return their store
    directories in order.  Complete stores of the same settings are kept with ``resume``."""
    run_configs = list(run_configs)
    keys = {_group_key(cfg) for cfg in run_configs}
    if len(keys) != 1:
        raise ValueError("a stacked chunk must hold runs of one dataset and model that differ only in the seed")
    dirs = [training.run_directory(out_dir, cfg) for cfg in run_configs]
    todo = [cfg for cfg, d in zip(run_configs, dirs) if not (resume and training.store_is_complete(d, cfg))]
    for cfg in run_configs:
        if cfg not in todo:
            log.info("skip training %s: store complete", cfg["run_id"])
    # an interrupted run with a checkpoint continues from it on its own (train_run); a lone run too.  One
    # without (a stacked chunk keeps none) starts anew: continued, it would retrain from its initial weights
    # on other batches than the stacked chunk recorded and join two trajectories in one store
    interrupted = [cfg for cfg, d in zip(run_configs, dirs) if cfg in todo and resume and training.continuable(d, cfg)]
    alone = [cfg for cfg in interrupted if has_checkpoint(out_dir, cfg["run_id"])]
    anew = [cfg for cfg in interrupted if cfg not in alone]
    todo = [cfg for cfg in todo if cfg not in alone]
    if len(todo) == 1:
        if todo[0] in anew:  # train_run would continue it: make room first (moved aside, not deleted)
            training.clear_for_new_run(dirs[run_configs.index(todo[0])],
                                       checkpoint_directory(out_dir, todo[0]["run_id"]), out_dir, keep=True)
        alone, todo = alone + todo, []
    for cfg in alone:
        training.train_run(cfg, out_dir, resume=resume, threads=threads, verbose=verbose)
    if todo:
        _train_stacked(todo, out_dir, resume=resume, threads=threads, verbose=verbose)
    return [str(d) for d in dirs]


def _train_stacked(run_configs, out_dir, *, resume, threads, verbose) -> None:
    for cfg in run_configs:  # as train_run makes room for a new run (a stacked chunk always starts anew)
        directory = training.run_directory(out_dir, cfg)
        training.clear_for_new_run(directory, checkpoint_directory(out_dir, cfg["run_id"]), out_dir, keep=resume)
        directory.parent.mkdir(parents=True, exist_ok=True)

    import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
    from ibtoolkit import models
    from ibtoolkit.callback import IBCallback
    from ibtoolkit.schedules import epoch_schedule

    seeds = [int(cfg["seed"]) for cfg in run_configs]
    training.set_seeds(seeds[0], threads)  # the chunk's Keras shuffle
    first = run_configs[0]
    data = training.prepare_data(first)  # the same for every seed: the split seed is the preset's
    model_cfg = first["model"]
    n_classes = int(max(data["y_train"].max(), data["y_test"].max()) + 1)
    members = [training.build_model(model_cfg, input_dim=data["x_train"].shape[1], n_classes=n_classes, seed=seed)
               for seed in seeds]
    names = [cfg["run_id"] for cfg in run_configs]
    stacked = models.stack(members, names=names, name=f"stack-{names[0]}")
    # XLA fuses the member-axis step's small ops (benchmarks/bench_training.py compares both graphs)
    stacked.compile(optimizer=type(members[0].optimizer).from_config(members[0].optimizer.get_config()),
                    loss=members[0].loss, metrics=["accuracy"], jit_compile=True)
    log.info("training %d seeds of %s stacked (%s path)", len(names), model_cfg["name"], stacked.path)
    runs, dataset_meta = {}, {}
    for cfg in run_configs:
        seed = int(cfg["seed"])
        runs[cfg["run_id"]] = {"run_id": cfg["run_id"], "dataset": cfg["dataset"], "model": model_cfg["name"],
                               "precision": model_cfg["precision"], "variant": model_cfg["variant"], "seed": seed,
                               "training": training.training_key(cfg)}
        dataset_meta[cfg["run_id"]] = {"name": cfg["dataset"], "seed": seed, "n_train": int(len(data["y_train"])),
                                       "n_test": int(len(data["y_test"])), "analysis": cfg.get("analysis", "all"),
                                       "source": str(data["info"].get("source", ""))}
    schedule, n_points = model_cfg.get("schedule", "log"), int(model_cfg.get("n_points", 100))
    callback = IBCallback(data["x_analysis"], data["y_analysis"], directory=pathlib.Path(out_dir) / "runs",
                          schedule=schedule, n_points=n_points, dataset=dataset_meta, run=runs)
    epochs = int(model_cfg["epochs"])
    recorded = epoch_schedule(schedule, epochs, n_points)
    x_train, y_train = stacked.member_data(data["x_train"], data["y_train"], seeds=seeds)
    validation = stacked.member_data(data["x_test"], data["y_test"])
    stacked.fit(x_train, y_train, validation_data=validation,
                validation_freq=[int(e) for e in recorded if e >= 1] or 1, epochs=epochs,
                batch_size=int(model_cfg["batch_size"]), shuffle=True, verbose=verbose, callbacks=[callback])
