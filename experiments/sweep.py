"""Sweep engine: run the tasks of a grid serially, on local cores (joblib/loky) or on Dask.

A grid (:func:`experiments.run.run_experiment`) is two stages of independent tasks:

1. **training runs**, one per (dataset, model = precision/activation/quantizer, seed): each task
   calls :func:`experiments.training.train_run`, which sets every seed and clears the Keras
   session *inside* the task, so a run's store does not depend on the worker that trained it;
2. **estimation jobs**, one per (store, estimator spec): each task opens the store read-only,
   computes its information plane and writes it to the per-(run, estimator) CSV cache under
   ``out/estimates/``.

Engines (:class:`Engine`):

``serial``  (``jobs=1``, no scheduler) every task in this process, in order: the behaviour of the
            CLI before sweeps existed.
``joblib``  (``jobs=N`` or ``-1``) joblib's ``loky`` process pool on the local cores, one
            TensorFlow and one BLAS thread per worker (the workers fill the cores).
``dask``    (``scheduler="local"`` or an address such as ``"tcp://host:8786"``) the same joblib
            calls through joblib's ``"dask"`` backend on a :class:`distributed.Client`:
            ``"local"`` starts a :class:`distributed.LocalCluster` of ``jobs`` (default: all
            cores) single-threaded worker processes; an address connects to a running scheduler
            whose workers have the package installed and see the same output directory.

A stage with a single task (one run, one store) runs in this process instead, where the inner
layer x epoch parallelism of :func:`ibtoolkit.information_plane` (``n_jobs``) still uses the engine.

A task never raises into the engine: it returns an :class:`Outcome` with the error text, the
progress bar counts it as failed and the grid goes on (the CLI prints every failure and exits 1).
Outcomes come back in task order whatever the engine, so the tables are assembled identically.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
import traceback
from typing import Any, Callable, Sequence

__all__ = ["Task", "Outcome", "Engine", "Progress", "check_scheduler", "SchedulerError", "DASK_HINT"]

#: How to install the optional Dask dependency (the ``distributed`` extra of setup.py).
DASK_HINT = 'pip install -e ".[distributed]"'

#: Seconds to wait for a remote Dask scheduler before giving up.
CONNECT_TIMEOUT = 20.0

_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+$")


class SchedulerError(ValueError):
    """The Dask scheduler cannot be used (not installed, bad address, unreachable)."""


@dataclasses.dataclass
class Task:
    """One unit of work: ``func(*args, **kwargs)``; ``func`` must be importable by name (picklable)."""

    kind: str                      # "train" or "estimate"
    key: str                       # what the task is about, e.g. "tishby-bnn-ste_sign-s0 / exact"
    func: Callable
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """What a task returned (``value``) or why it failed (``error``), and its wall time."""

    kind: str
    key: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    pid: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


# -- running one task ----------------------------------------------------------------------------
def _run(task: Task, in_worker: bool) -> Outcome:
    """Run one task and capture its result or error (executed in the worker)."""
    if in_worker:  # one TensorFlow and one BLAS thread per worker process
        from ibtoolkit.plane import limit_worker_threads

        limit_worker_threads()
    t0 = time.perf_counter()
    try:
        value = task.func(*task.args, **task.kwargs)
    except Exception as exc:  # noqa: BLE001 - reported as a failed task; the grid goes on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return Outcome(task.kind, task.key, error=f"{type(exc).__name__}: {exc} "
                       f"({os.path.basename(where.filename)}:{where.lineno})",
                       seconds=time.perf_counter() - t0, pid=os.getpid())
    return Outcome(task.kind, task.key, value=value, seconds=time.perf_counter() - t0, pid=os.getpid())


def _run_indexed(i: int, task: Task, in_worker: bool) -> tuple[int, Outcome]:
    return i, _run(task, in_worker)


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """One overall tqdm bar over every task of a grid, with finished / failed counts as postfix."""

    def __init__(self, total: int, enabled: bool = True, desc: str = "sweep"):
        from tqdm.auto import tqdm

        self.finished = 0
        self.failed = 0
        self.bar = tqdm(total=int(total), desc=desc, unit="task", disable=not enabled)
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"finished={self.finished} failed={self.failed}", refresh=False)

    def done(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.finished += 1
        else:
            self.failed += 1
        self._postfix()
        self.bar.update(1)

    def drop(self, n: int) -> None:
        """Remove ``n`` tasks that will not run (e.g. estimates of a run whose training failed)."""
        if n:
            self.bar.total = max(self.bar.total - int(n), self.bar.n)
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the engine ----------------------------------------------------------------------------------
def check_scheduler(scheduler) -> None:
    """Validate a ``--scheduler`` value and that Dask is installed; ``ValueError`` naming the fix."""
    if scheduler is None:
        return
    if not isinstance(scheduler, str):
        if type(scheduler).__name__ == "Client":
            return
        raise ValueError(f"scheduler must be 'local', an address such as tcp://host:8786 or a "
                         f"distributed.Client, got {type(scheduler).__name__}")
    if scheduler != "local" and not _ADDRESS.match(scheduler):
        raise SchedulerError(f"--scheduler takes 'local' (start a Dask LocalCluster) or a scheduler address "
                         f"such as tcp://host:8786, got {scheduler!r}")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SchedulerError(f"--scheduler {scheduler} needs Dask distributed, which is not installed; "
                         f"install the optional extra with: {DASK_HINT}") from None


class Engine:
    """Where the tasks of a grid run; a context manager (it starts and stops a Dask client).

    Parameters
    ----------
    jobs : int
        Local worker processes (``-1``: all cores); with ``scheduler="local"`` the number of Dask
        workers (``1`` or ``-1``: all cores).  Ignored with a scheduler address.
    scheduler : None, "local", an address ("tcp://host:8786") or a ``distributed.Client``
        None: serial (``jobs == 1``) or joblib/loky.  A client given by the caller is used as it
        is and not closed.
    connect_timeout : float, optional
        Seconds to wait for a remote scheduler before giving up (:class:`SchedulerError`); default
        :data:`CONNECT_TIMEOUT`.
    """

    def __init__(self, jobs: int = 1, scheduler=None, *, connect_timeout: float | None = None):
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs == 0 or jobs < -1:
            raise ValueError(f"jobs must be a positive number of workers or -1 (all cores), got {jobs!r}")
        check_scheduler(scheduler)
        self.jobs = jobs
        self.scheduler = scheduler
        self.connect_timeout = float(CONNECT_TIMEOUT if connect_timeout is None else connect_timeout)
        self.mode = "dask" if scheduler is not None else ("serial" if jobs == 1 else "joblib")
        self.client = None
        self._owned: list = []

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Engine":
        if self.mode != "dask":
            return self
        import distributed

        if not isinstance(self.scheduler, str):
            self.client = self.scheduler
        elif self.scheduler == "local":
            n = (os.cpu_count() or 1) if self.jobs in (1, -1) else self.jobs
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            self._owned.append(cluster)
            self.client = distributed.Client(cluster, set_as_default=False)
            self._owned.insert(0, self.client)
        else:
            try:
                self.client = distributed.Client(self.scheduler, timeout=self.connect_timeout,
                                                 set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise SchedulerError(f"could not connect to the Dask scheduler at {self.scheduler} "
                                 f"({type(exc).__name__}: {exc}); start it with `dask scheduler` and "
                                 f"workers with `dask worker {self.scheduler}`") from None
            self._owned.append(self.client)
        return self

    def __exit__(self, *exc) -> None:
        for obj in self._owned:
            with contextlib.suppress(Exception):
                obj.close()
        self._owned = []
        self.client = None

    # ---------------------------------------------------------------- properties
    @property
    def parallel(self) -> bool:
        return self.mode != "serial"

    @property
    def inner_jobs(self) -> int:
        """``n_jobs`` for :func:`ibtoolkit.information_plane` when a stage runs in this process."""
        return 1 if self.mode == "serial" else (-1 if self.mode == "dask" else self.jobs)

    def describe(self) -> str:
        if self.mode == "serial":
            return "serial"
        if self.mode == "joblib":
            return f"joblib/loky, {self.jobs if self.jobs > 0 else os.cpu_count()} workers"
        n = len(self.client.scheduler_info().get("workers", {})) if self.client is not None else "?"
        return f"dask ({self.scheduler if isinstance(self.scheduler, str) else 'client'}), {n} workers"

    def backend(self):
        """The joblib configuration of this engine (Dask backend on the client, else joblib's default)."""
        if self.mode == "dask":
            from joblib import parallel_config

            return parallel_config(backend="dask", client=self.client)
        return contextlib.nullcontext()

    # ---------------------------------------------------------------- running
    def map(self, tasks: Sequence[Task], progress: Progress | None = None, *, local: bool = False) -> list[Outcome]:
        """Run ``tasks``; outcomes in task order.  ``local=True`` (or a serial engine, or a single
        task) runs them one after another in this process, inside :meth:`backend`."""
        tasks = list(tasks)
        results: list[Outcome | None] = [None] * len(tasks)
        if not tasks:
            return []
        if local or not self.parallel or len(tasks) == 1:
            with self.backend():
                for i, task in enumerate(tasks):
                    results[i] = _run(task, in_worker=False)
                    if progress is not None:
                        progress.done(results[i])
            return results  # type: ignore[return-value]
        from joblib import Parallel, delayed

        n_jobs = -1 if self.mode == "dask" else self.jobs
        try:
            with self.backend():
                runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
                for i, outcome in runner(delayed(_run_indexed)(i, t, True) for i, t in enumerate(tasks)):
                    results[i] = outcome
                    if progress is not None:
                        progress.done(outcome)
        except Exception as exc:  # noqa: BLE001 - e.g. a worker killed (out of memory): the pool is gone
            message = f"not finished: the worker pool failed ({type(exc).__name__}: {exc})"
            for i, task in enumerate(tasks):
                if results[i] is None:
                    results[i] = Outcome(task.kind, task.key, error=message)
                    if progress is not None:
                        progress.done(results[i])
        return results  # type: ignore[return-value]
