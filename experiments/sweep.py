"""The experiments' sweep: the two stages of a grid on :mod:`ibtoolkit.parallel`'s engine.

A grid (:func:`experiments.run.run_experiment`) is two stages of independent tasks:

1. **training runs**, one per (dataset, model = precision/activation/quantizer, seed): each task
   calls :func:`experiments.training.train_run`, which sets every seed and clears the Keras
   session *inside* the task, so a run's store does not depend on the worker that trained it;
2. **estimation jobs**, one per (store, estimator spec): each task opens the store read-only,
   computes its information plane and writes it to the per-(run, estimator) CSV cache under
   ``out/estimates/``.

Both stages run on one :class:`ibtoolkit.parallel.Engine` (serial, joblib/loky or Dask).  A stage
with a single task (one run, one store) runs in this process instead, where the inner layer x epoch
parallelism of :func:`ibtoolkit.information_plane` (``n_jobs = engine.inner_jobs``) uses the same
engine.  A task never raises into the engine: it returns an :class:`~ibtoolkit.parallel.Outcome`
with the error text, the progress bar counts it as failed and the grid goes on (the CLI prints every
failure and exits 1).

The names below are :mod:`ibtoolkit.parallel`'s, kept here for the experiments and their users.
"""
from ibtoolkit.parallel import (CONNECT_TIMEOUT, DASK_HINT, Engine, Outcome, Progress, SchedulerError, Task,
                                check_scheduler)

__all__ = ["Task", "Outcome", "Engine", "Progress", "check_scheduler", "SchedulerError", "DASK_HINT",
           "CONNECT_TIMEOUT"]
