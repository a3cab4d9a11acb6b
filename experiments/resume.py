"""Continue a killed training run: a per-epoch shuffling order and a checkpoint beside the store.

A run trained by :func:`experiments.training.train_run` can be continued exactly after a crash
(``python -m experiments.run --resume``) because everything that determines epoch ``e`` is saved or
recomputable:

* **weights and optimizer state**: :class:`TrainingCheckpoint` saves ``tf.train.Checkpoint(model=...,
  optimizer=..., epoch=...)`` into ``<out>/checkpoints/<run_id>/`` right after an epoch was committed
  to the store, at most every ``every_seconds`` (default 30 s) and at the end of ``fit``.  So a
  checkpoint is always of a committed epoch, whose weight fingerprint the store holds
  (:mod:`ibtoolkit.fingerprint`).
* **shuffling state**: the batches of epoch ``e`` are the training rows in the order of
  ``argsort(stateless_uniform([n], seed=(seed, e)))`` (:func:`epoch_batches`), a function of the run's
  seed and the epoch number alone, so a resumed run sees the very batches the uninterrupted run would
  have seen.

Resuming from a checkpoint of epoch ``c`` older than the store's last committed epoch ``E`` trains
epochs ``c+1 .. E`` again; :class:`~ibtoolkit.IBCallback` records that in the store (events
``retrained`` and ``retrained_check``) and records from ``E + 1`` on: no gap, no silent join.  With no
checkpoint at all the run restarts from its seeded initial weights (the state of epoch 0) the same way.
"""
from __future__ import annotations

import json
import math
import pathlib
import time

import numpy as np

__all__ = ["epoch_batches", "TrainingCheckpoint", "checkpoint_directory", "has_checkpoint", "restore_checkpoint"]

_STATE = "state.json"


def checkpoint_directory(out_dir, run_id: str) -> pathlib.Path:
    """``<out>/checkpoints/<run_id>``: beside the store, never inside it."""
    return pathlib.Path(out_dir) / "checkpoints" / run_id


def has_checkpoint(out_dir, run_id: str) -> bool:
    """Whether ``run_id`` has a checkpoint to continue from (its ``state.json`` names one)."""
    return (checkpoint_directory(out_dir, run_id) / _STATE).is_file()


def epoch_batches(x, y, batch_size: int, seed: int, initial_epoch: int, epochs: int):
    """``(dataset, steps_per_epoch)`` for ``model.fit(dataset, epochs=epochs, initial_epoch=initial_epoch,
    steps_per_epoch=steps_per_epoch)``: Keras epoch ``e`` (0-based) gets every row once, in the order
    ``argsort(stateless_uniform([n], seed=(seed, e)))``, cut into batches of ``batch_size`` (the last
    one shorter).  The dataset holds exactly the batches of epochs ``initial_epoch .. epochs - 1``."""
    import tensorflow as tf

    n = int(len(x))
    if n == 0:
        raise ValueError("epoch_batches needs at least one training row")
    steps = math.ceil(n / int(batch_size))
    xs, ys = tf.constant(np.asarray(x)), tf.constant(np.asarray(y))

    def one_epoch(epoch):
        key = tf.stack([tf.constant(int(seed), tf.int64), epoch])
        order = tf.argsort(tf.random.stateless_uniform([n], seed=key))
        return (tf.data.Dataset.from_tensor_slices(order).batch(int(batch_size))
                .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i))))

    dataset = tf.data.Dataset.range(int(initial_epoch), int(epochs)).flat_map(one_epoch)
    return dataset.prefetch(2), steps


class _Checkpoint:
    """The saved objects of a run: model, optimizer and the number of completed epochs."""

    def __init__(self, model):
        import tensorflow as tf

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=self.epoch)


class TrainingCheckpoint:
    """Keras callback factory: see :func:`TrainingCheckpoint.callback` (kept a plain class so that this
    module imports without TensorFlow)."""

    @staticmethod
    def callback(directory, recorder, every_seconds: float = 30.0):
        """A Keras callback that checkpoints the run into ``directory`` after committed epochs.

        ``recorder`` is the run's :class:`~ibtoolkit.IBCallback` (placed before this callback): a
        checkpoint is taken only at an epoch it has just committed (``recorder.last_committed``), at
        most every ``every_seconds``, and at the end of ``fit`` if that epoch is committed.
        ``state.json`` beside it says which epoch it holds.
        """
        import tensorflow as tf

        directory = pathlib.Path(directory)

        class _Callback(tf.keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self._saved = _Checkpoint(self.model)
                self._last = time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                if time.monotonic() - self._last >= every_seconds:
                    self._save_committed()

            def on_train_end(self, logs=None):
                self._save_committed()

            def _save_committed(self):
                committed = recorder.last_committed
                if committed is None or committed != recorder.trained_epochs:
                    return  # only the state of a committed epoch: its fingerprint is in the store
                _save(self._saved, directory, committed)
                self._last = time.monotonic()

        return _Callback()


def _save(saved: _Checkpoint, directory: pathlib.Path, epoch: int) -> None:
    """Write the checkpoint, then ``state.json`` (atomically): a kill in between leaves the older pair."""
    import os

    directory.mkdir(parents=True, exist_ok=True)
    saved.epoch.assign(int(epoch))
    prefix = saved.checkpoint.write(str(directory / f"epoch-{int(epoch)}"))
    tmp = directory / (_STATE + ".tmp")
    tmp.write_text(json.dumps({"epoch": int(epoch), "prefix": pathlib.Path(prefix).name}))
    os.replace(tmp, directory / _STATE)
    for old in directory.glob("epoch-*"):  # keep only the checkpoint state.json names
        if not old.name.startswith(f"epoch-{int(epoch)}."):
            old.unlink()


def restore_checkpoint(model, directory) -> int | None:
    """Restore ``model``'s weights and optimizer state from ``directory``; return the number of
    completed epochs it holds, or None when there is no checkpoint.  The optimizer's slots are built
    first (a zero-gradient step would move Adam's counters, so they are created directly)."""
    directory = pathlib.Path(directory)
    state_file = directory / _STATE
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    saved = _Checkpoint(model)
    model.optimizer.build(model.trainable_variables)
    saved.checkpoint.read(str(directory / state["prefix"])).assert_existing_objects_matched()
    if int(saved.epoch.numpy()) != int(state["epoch"]):
        raise ValueError(f"{directory}: checkpoint holds epoch {int(saved.epoch.numpy())}, state.json says "
                         f"{state['epoch']}")
    return int(state["epoch"])
