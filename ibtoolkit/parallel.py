"""One parallel engine for the library and the experiments: serial, joblib (loky) or Dask.

A :class:`Task` is a picklable callable with its arguments; :meth:`Engine.map` runs a list of them
and returns one :class:`Outcome` per task, in task order whatever the engine, so tables assembled
from the outcomes are identical serially and in parallel.

Engines (:class:`Engine`):

``serial``  (``jobs=1``, no scheduler) every task in this process, in order.
``joblib``  (``jobs=N`` or ``-1``) joblib's ``loky`` process pool on the local cores, or whatever
            backend the caller activated with ``joblib.parallel_config``.  Worker processes run
            one TensorFlow and one BLAS thread each (:func:`limit_worker_threads`: the workers
            already fill the cores).
``dask``    (``scheduler="local"`` or an address such as ``"tcp://host:8786"``, or a
            ``distributed.Client``) the same joblib calls through joblib's ``"dask"`` backend:
            ``"local"`` starts a :class:`distributed.LocalCluster` of ``jobs`` (default: all cores)
            single-threaded worker processes; an address connects to a running scheduler whose
            workers have the package installed and see the same files.

By default a task never raises into the engine: its error becomes :attr:`Outcome.error` (the
progress bar counts it as failed) and the other tasks go on; a worker pool that dies (a worker
killed by the out-of-memory killer) fails the unfinished tasks the same way.  With
``capture=False`` the first error is raised instead, with its own type.

Workers that need costly state built once per call and reused by all of that call's tasks (an
opened store, estimator instances) keep it with :func:`worker_state`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import re
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Callable, Sequence

__all__ = ["Task", "Outcome", "Engine", "Progress", "check_scheduler", "SchedulerError", "DASK_HINT",
           "CONNECT_TIMEOUT", "limit_worker_threads", "worker_state", "drop_worker_state"]

#: How to install the optional Dask dependency (the ``distributed`` extra of setup.py).
DASK_HINT = 'pip install -e ".[distributed]"'

#: Seconds to wait for a remote Dask scheduler before giving up.
CONNECT_TIMEOUT = 20.0

_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+$")


class SchedulerError(ValueError):
    """The Dask scheduler cannot be used (not installed, bad address, unreachable)."""


@dataclasses.dataclass
class Task:
    """One unit of work: ``func(*args, **kwargs)``; ``func`` must be importable by name (picklable).
    ``kind`` and ``key`` say what the task is about (in outcomes and error messages)."""

    kind: str
    key: str
    func: Callable
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """What a task returned (``value``) or why it failed (``error``), its wall time and process."""

    kind: str
    key: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    pid: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


# -- worker processes ------------------------------------------------------------------------------
_THREADS_LIMITED = False
_STATE = threading.local()


def limit_worker_threads() -> None:
    """One TensorFlow and one BLAS thread in this worker process, set once per process (the workers
    already fill the cores).  Does nothing in a process that is not a child process (the user's own
    process, e.g. under joblib's threading backend)."""
    global _THREADS_LIMITED
    if _THREADS_LIMITED or multiprocessing.parent_process() is None:
        return
    _THREADS_LIMITED = True
    os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as exc:  # TF already initialised in this worker: say so, keep going
            warnings.warn(f"could not limit TensorFlow to one thread in a worker: {exc}", RuntimeWarning,
                          stacklevel=2)


def worker_state(token: str, build: Callable[[], Any]) -> Any:
    """The state of call ``token`` in this worker: ``build()`` on the first task of the call here,
    the same object for its later tasks.  Thread-local (a threading backend gives every thread its
    own, so the state need not be thread-safe); one call's state at a time per thread."""
    if getattr(_STATE, "token", None) != token:
        _STATE.value = build()
        _STATE.token = token
    return _STATE.value


def drop_worker_state(token: str) -> None:
    """Forget the state of call ``token`` in this thread (after a call that ran some tasks here)."""
    if getattr(_STATE, "token", None) == token:
        _STATE.token = _STATE.value = None


def _run(task: Task, in_worker: bool, capture: bool = True) -> Outcome:
    """Run one task and capture its result or error (executed in the worker)."""
    if in_worker:
        limit_worker_threads()
    t0 = time.perf_counter()
    try:
        value = task.func(*task.args, **task.kwargs)
    except Exception as exc:  # noqa: BLE001 - reported as a failed task; the others go on
        if not capture:
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return Outcome(task.kind, task.key, error=f"{type(exc).__name__}: {exc} "
                       f"({os.path.basename(where.filename)}:{where.lineno})",
                       seconds=time.perf_counter() - t0, pid=os.getpid())
    return Outcome(task.kind, task.key, value=value, seconds=time.perf_counter() - t0, pid=os.getpid())


def _run_indexed(i: int, task: Task, in_worker: bool, capture: bool) -> tuple[int, Outcome]:
    return i, _run(task, in_worker, capture)


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """One tqdm bar over a list of tasks, with finished / failed task counts as postfix."""

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
    """Validate a scheduler value and that Dask is installed; ``ValueError`` naming the fix."""
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
    """Where tasks run; a context manager (it starts and stops a Dask client).

    Parameters
    ----------
    jobs : int
        Local worker processes (``-1``: all cores); with ``scheduler="local"`` the number of Dask
        workers (``1`` or ``-1``: all cores).  Ignored with a scheduler address.
    scheduler : None, "local", an address ("tcp://host:8786") or a ``distributed.Client``
        None: serial (``jobs == 1``) or joblib.  A client given by the caller is used as it is and
        not closed.
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
        """The joblib configuration of this engine (Dask backend on the client, else the active one)."""
        if self.mode == "dask":
            from joblib import parallel_config

            return parallel_config(backend="dask", client=self.client)
        return contextlib.nullcontext()

    # ---------------------------------------------------------------- running
    def map(self, tasks: Sequence[Task], progress: Progress | None = None, *, local: bool = False,
            capture: bool = True) -> list[Outcome]:
        """Run ``tasks``; outcomes in task order.  ``local=True`` (or a serial engine, or a single
        task) runs them one after another in this process, inside :meth:`backend`.  ``progress``
        (anything with ``done(outcome)``) hears of each outcome as it arrives.  ``capture=False``
        raises the first task error (with its type) instead of returning it as an outcome."""
        tasks = list(tasks)
        results: list[Outcome | None] = [None] * len(tasks)
        if not tasks:
            return []
        if local or not self.parallel or len(tasks) == 1:
            with self.backend():
                for i, task in enumerate(tasks):
                    results[i] = _run(task, False, capture)
                    if progress is not None:
                        progress.done(results[i])
            return results  # type: ignore[return-value]
        from joblib import Parallel, delayed

        n_jobs = -1 if self.mode == "dask" else self.jobs
        try:
            with self.backend():
                runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
                for i, outcome in runner(delayed(_run_indexed)(i, t, True, capture) for i, t in enumerate(tasks)):
                    results[i] = outcome
                    if progress is not None:
                        progress.done(outcome)
        except Exception as exc:  # noqa: BLE001 - e.g. a worker killed (out of memory): the pool is gone
            if not capture:
                raise
            message = f"not finished: the worker pool failed ({type(exc).__name__}: {exc})"
            for i, task in enumerate(tasks):
                if results[i] is None:
                    results[i] = Outcome(task.kind, task.key, error=message)
                    if progress is not None:
                        progress.done(results[i])
        return results  # type: ignore[return-value]
