"""``IBCallback``: record hidden representations during ``model.fit`` into an activation store.

``model.fit(x, y, callbacks=[IBCallback(x_analysis, y_analysis)])`` records, for every hidden layer,
the representation :math:`T_\\ell(x)` of each analysis sample (the tensor the next layer consumes,
in inference mode, see :mod:`ibtoolkit.taps`) at epoch 0 (before any update) and at the epochs of a
schedule (:mod:`ibtoolkit.schedules`), so that I(X;T) and I(T;Y) can be estimated afterwards
(Shwartz-Ziv & Tishby 2017; Raj, Nayak & Kalyani 2020) by any estimator, from the store alone.

Epoch numbering (the store's): epoch k is the network after k completed training epochs; Keras'
``on_epoch_end(epoch=i)`` records epoch ``i + 1 + offset``.  The offset continues a run: a second
``fit`` on the same callback, or a new callback on an existing store directory, continues after the
epoch whose weights the model has (``start``: the store's recorded state equal to the model's weights,
see "Continuing a store"; ``max(epochs trained by this callback, last stored epoch)`` for a store
without fingerprints), unless ``initial_epoch`` already says so (then ``offset = max(0, start -
initial_epoch)``).

Live estimation: with ``estimators=["exact", ...]`` the callback also estimates I(X;T) and I(T;Y)
(bits) at each recorded epoch and adds ``ib/<layer>/ixt`` and ``ib/<layer>/ity`` (first estimator)
or ``ib/<estimator>/<layer>/ixt`` (others) to the Keras ``logs``, at every epoch (NaN where not
recorded), so History, CSVLogger and TensorBoard placed after it see a rectangular table; the values
are also stored with the epoch's metrics.  An estimator that cannot measure a layer by its
declaration (``exact`` on a continuous one) is refused once, in ``on_train_begin``, before the store
is touched (:mod:`ibtoolkit.live`).

Writing: the extraction runs in ``on_epoch_end`` (the weights change right after), by default as
one XLA-compiled function (``jit_compile="auto"``).  XLA compiles on a helper thread
while Keras traces its first training step, so epoch 0 of a new store comes from the model's layers
run eagerly (no trace; the same values up to float rounding, see :class:`ibtoolkit.extractor.Extractor`)
and every later epoch from XLA.  Each epoch is committed to the store
(:meth:`ActivationStore.append`: one block appended to each layer file, one log line) before
``on_epoch_end`` returns, so a SIGKILL after it loses nothing.  With ``background=True`` the commit
and the other store writes (events, status) run on one writer thread instead, in order, overlapping
the next epoch's training: at most two epochs are in flight (back-pressure beyond), an error of the
writer is raised in the training thread at the next epoch or at the end of ``fit``,
``on_train_end`` waits for every write, and a SIGKILL loses at most the epochs in flight
(:class:`ibtoolkit.store.BackgroundWriter`).  It pays off only with spare cores and slow storage:
otherwise the writer thread's CPU and GIL traffic cost training more than the commit itself
(``benchmarks/bench_callback.py`` compares both), so it is off by default.

Continuing a store: every commit records the fingerprint of the model's weights
(:mod:`ibtoolkit.fingerprint`; the extraction graph copies the weights in the same call), and a
``fit`` that ends between recorded epochs leaves an event ``trained`` with the final weights'
fingerprint.  A callback on an existing store compares the model's weights with these states in
``on_train_begin``, before the store is opened for writing: a model whose weights are none of them
(a fresh model, another run) is refused with a :class:`~ibtoolkit.StoreError` that names the store
and a free sibling directory for a new run (one run per store), and nothing is written.  A model at
one of them continues after that state's epoch; an older state than the last committed epoch (a
checkpoint) trains the later epochs again without recording them twice, and the store records it
(events ``retrained`` and, at the last committed epoch, ``retrained_check``: whether the retraining
reproduced the recorded weights).  Stores recorded without fingerprints continue after their last
epoch, as before.

Stacked models (:func:`ibtoolkit.models.stack`): one extraction call per recorded epoch for every
member and one ordinary store per member at ``<directory>/<member name>/``
(:mod:`ibtoolkit.stacking.recording`, ``docs/stacking.md``).

Divergence (non-finite loss or activations): an event ``diverged`` is recorded, the status
set to ``diverged``, one warning issued, and nothing more is recorded; earlier epochs are kept and
no NaN array is written.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import _keras

_keras.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

from .registry import get_estimator  # noqa: E402
from .schedules import DEFAULT_N_POINTS, epoch_schedule  # noqa: E402
from .store import DTYPES, ActivationStore, BackgroundWriter, run_metadata  # noqa: E402
from .continuation import continued_epoch, retrained_check_message, retraining_message  # noqa: E402
from .fingerprint import WeightFingerprint, fingerprint_values  # noqa: E402
from .live import fill_history, history_keys, log_prefix, refuse_unmeasurable  # noqa: E402
from .extractor import check_jit_compile, make_extractor  # noqa: E402
from .taps import representation_taps  # noqa: E402
from .recording_fields import analysis_labels, default_directory, describe_model, scalar_metrics  # noqa: E402
from .validation import all_finite, require_finite  # noqa: E402

__all__ = ["IBCallback", "DivergenceWarning", "default_directory"]


def _is_stacked(model) -> bool:
    """True for a :func:`ibtoolkit.models.stack` model (recorded as one store per member)."""
    from .stacking.model import is_stacked

    return is_stacked(model)


class DivergenceWarning(RuntimeWarning):
    """Training produced a non-finite loss or representation; recording stopped."""


class IBCallback(tf.keras.callbacks.Callback):
    """Record every hidden representation of a model on an analysis set while it trains.

    Every commit carries the fingerprint of the model's weights (:mod:`ibtoolkit.fingerprint`), copied
    by the extraction graph itself; a callback on an existing store continues it only with a model
    whose weights are one of the store's recorded states, refusing any other before anything is
    written (module docstring, "Continuing a store").

    Parameters
    ----------
    x, y : arrays
        The analysis set (Keras callbacks never see the data given to ``fit``): inputs (N, ...) and
        integer labels (N,) (exact one-hot rows are accepted).  Stored once in the store.
    directory : path or None
        Store directory; default a fresh ``ib_runs/<model name>-<YYYYmmdd-HHMMSS>``.  An existing
        store with the same layers and analysis set is continued.
    schedule : str or list of int
        ``"log"`` (default), ``"all"``, ``"every:k"``, ``"dense:K,log"`` or explicit epochs
        (see :func:`ibtoolkit.schedules.epoch_schedule`); epoch 0 is always recorded.
    n_points : int
        Size of a log schedule over the run.
    layers : list of str or None
        Layers to tap (default: every hidden layer, see :func:`ibtoolkit.taps.representation_taps`).
    estimators : list or None
        Estimators (names, dicts or instances for :func:`ibtoolkit.get_estimator`) to run live.
        One that must be fitted on every recorded epoch first (binning ``value_range="data"``)
        is refused with ``ValueError``: a live estimate cannot see the epochs to come.
    dataset : str or dict or None
        Dataset description for the manifest (name, split...); sizes are added automatically.
    batch_size : int
        Rows per extraction batch.
    jit_compile : {"auto", True, False}
        Compile the extraction with XLA: ``"auto"`` (default) when XLA can compile the model, else
        the plain graph (see :class:`ibtoolkit.extractor.Extractor`; continuous taps may then differ from
        ``model.predict`` by rounding, up to about 5e-6).
    dtype : {"float32", "float16"}
        Storage type of continuous layers.
    verbose : int
        0 silent; 1 prints the store directory and the number of recorded epochs.
    background : bool
        Commit epochs on a background writer thread (``True``) instead of synchronously in
        ``on_epoch_end`` (``False``, the default; faster on few cores, see the module docstring).
    run : dict or None
        Run metadata kept as the store's ``manifest["run"]`` (JSON-serialisable), e.g. ``{"run_id":
        ..., "dataset": ..., "model": "bnn-ste_sign", "precision": "binary", "variant": "ste_sign",
        "seed": 0}``: :func:`ibtoolkit.information_plane` puts ``dataset``, ``model``, ``precision``,
        ``variant`` and ``seed`` into every row.  Continuing a store that holds a different run dict
        raises :class:`ibtoolkit.store.StoreError` in ``on_train_begin``.
    """

    _fingerprint_commits = True  # benchmarks switch it off to measure the fingerprint's cost

    def __init__(self, x, y, directory=None, schedule="log", n_points: int = DEFAULT_N_POINTS, layers=None,
                 estimators=None, dataset=None, batch_size: int = 4096, dtype: str = "float32", verbose: int = 0,
                 background: bool = False, run=None, jit_compile="auto"):
        super().__init__()
        x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ValueError(f"x must be a numeric array, got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.complexfloating):  # the store keeps real inputs only: say so now
            raise ValueError(f"x must be real-valued, got dtype {x.dtype}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"x must have shape (N, features...) with N >= 1, got {x.shape}")
        require_finite(x, "x")
        self.x = x
        self.y = analysis_labels(y, x.shape[0])
        if isinstance(schedule, str):
            epoch_schedule(schedule, 10, n_points)  # validates the spec and n_points now, not after training
        else:
            sched = np.asarray(schedule)
            epoch_schedule(schedule, int(sched.max()) if sched.size and sched.dtype != object else 0, n_points)
        self.schedule = schedule
        self.n_points = n_points
        self.layers = None if layers is None else list([layers] if isinstance(layers, str) else layers)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.jit_compile = check_jit_compile(jit_compile)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        self.dtype = dtype
        self.verbose = int(verbose)
        self.background = bool(background)
        if dataset is None:
            dataset = {}
        elif isinstance(dataset, str):
            dataset = {"name": dataset}
        elif not isinstance(dataset, dict):
            raise ValueError(f"dataset must be a name, a dict or None, got {type(dataset).__name__}")
        self.dataset = dict(dataset)
        self.run = run_metadata(run)  # checked now, not at the first epoch
        self.estimators = [get_estimator(spec) for spec in (estimators or [])]
        names = [e.name or type(e).__name__ for e in self.estimators]
        if len(set(names)) != len(names):
            raise ValueError(f"estimators must have distinct names (their log keys would clash), got {names}")
        self._estimator_names = names
        unfit = [e.describe() for e in self.estimators if e.needs_fit_data]
        if unfit:  # a live estimate cannot see the epochs still to come, which its fit needs
            raise ValueError(f"live estimators cannot be fitted on a run's future epochs: {unfit} (e.g. binning "
                             f"value_range='data'); give a fixed value_range or bin_size, or estimate afterwards "
                             f"with information_plane, which fits on every recorded epoch")
        self._x_est = x.reshape(x.shape[0], -1)
        self.directory = None if directory is None else Path(directory)
        # state across fit calls
        self.taps = None
        self.store = None
        self._extractor = None
        self._compiling = None     # Future of the background XLA compilation, until first waited for
        self._prepared = None
        self._model_id = None
        self._trained = 0          # epochs completed as far as this callback knows (absolute)
        self._diverged = False
        self._warned = False
        self._last_logs: dict = {}
        self._history_keys: list[str] = []
        self._writer: BackgroundWriter | None = None
        self._fingerprint = None
        self._retrain_to = None
        self._retrain_states: dict = {}
        self._members = None       # a stacked model's per-member recorders (ibtoolkit.stacking.recording)

    # ------------------------------------------------------------------ lifecycle
    def on_train_begin(self, logs=None):
        if self._members is not None or _is_stacked(self.model):  # one store per member
            return self._member_recorders().on_train_begin(logs)
        if self.store is not None:  # an earlier fit raised before on_train_end: release its store first
            self.close("an earlier fit ended with an exception")
        model = self.model
        if self._extractor is None or self._model_id != id(model):
            self.taps = representation_taps(model, self.layers)
            self._extractor = make_extractor(model, self.taps, self.batch_size, self.jit_compile,
                                             model.weights if self._fingerprint_commits else None)
            self._prepared = self._extractor.prepare(self.x)
            self._model_id = id(model)
            self._fingerprint = WeightFingerprint(model)
            if self._extractor.jit_compiled is None:  # XLA compiles beside Keras' tracing of epoch 1
                self._extractor.trace(True)  # Keras layers are traced on this thread only
                compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="IBCallback-xla")
                self._compiling = compiler.submit(self._extractor.compile, self._prepared)
                compiler.shutdown(wait=False)
        if self.directory is None:
            self.directory = default_directory(model.name)
        n_classes = int(self.y.max()) + 1
        dataset = {**self.dataset, "n_samples": int(self.x.shape[0]), "input_shape": list(self.x.shape[1:]),
                   "n_classes": n_classes, "label_counts": np.bincount(self.y, minlength=n_classes).tolist()}
        schedule = {"spec": self.schedule if isinstance(self.schedule, str) else np.asarray(self.schedule).tolist(),
                    "n_points": int(self.n_points)}
        refuse_unmeasurable(self.estimators, self.taps)
        self._history_keys = history_keys(self._estimator_names, self.taps)
        continued = self._continued_epoch()  # before the store is opened for writing: a refusal changes nothing
        self.store = ActivationStore.create(
            self.directory, inputs=self._x_est, labels=self.y, layers=[(t.name, t.width) for t in self.taps],
            binary=[t.binary for t in self.taps], model=describe_model(model, self.taps), dataset=dataset,
            schedule=schedule, dtype=self.dtype, resume=True, run=self.run)
        self.store.set_status("running")
        if self.background:
            self._writer = BackgroundWriter(max_pending=2, name="IBCallback-writer")
        epochs = self.store.epochs
        self._stored_last = int(epochs[-1]) if len(epochs) else None
        self._start = max(self._trained, self._stored_last or 0) if continued is None else continued
        self._retrain_to = self._note_retraining(continued)
        self._offset = None  # known at the first on_epoch_begin (Keras does not tell initial_epoch earlier)
        self._to_record = set()
        self._end = None
        if self.verbose:
            print(f"IBCallback: recording {len(self.taps)} layers of {model.name!r} to {self.directory}")

    def on_epoch_begin(self, epoch, logs=None):
        if self._members is not None:
            return self._members.on_epoch_begin(epoch, logs)
        if self._offset is not None:
            return
        self._offset = max(0, self._start - int(epoch))
        current = int(epoch) + self._offset          # epochs completed before this update
        self._end = int(self.params.get("epochs", epoch + 1)) + self._offset
        self._to_record = self._planned(current, self._end)
        if self._stored_last is None and not self._diverged:
            self._record(current, {}, initial=True)

    def on_epoch_end(self, epoch, logs=None):
        if self._members is not None:
            return self._members.on_epoch_end(epoch, logs)
        if self._offset is None:  # defensive: fit always calls on_epoch_begin first
            self.on_epoch_begin(epoch, logs)
        absolute = int(epoch) + 1 + self._offset
        self._trained = absolute
        self._last_logs = logs if logs is not None else {}
        self._check_writes()
        if self._diverged:
            fill_history(logs, self._history_keys)
            return
        metrics = scalar_metrics(logs)
        bad = [k for k, v in metrics.items() if k.endswith("loss") and not np.isfinite(v)]
        if bad:
            self._diverge(absolute, f"non-finite {', '.join(bad)} at epoch {absolute}")
            fill_history(logs, self._history_keys)
            return
        if absolute in self._to_record:
            self._record(absolute, logs, metrics)
        elif absolute == self._retrain_to:
            self._check_retrained(absolute)
        fill_history(logs, self._history_keys)

    def on_train_end(self, logs=None):
        if self._members is not None:
            return self._members.on_train_end(logs)
        if self.store is None:
            return
        try:
            if not self._diverged:
                if self._stored_last is None and self._offset is None:  # fit ran no epoch at all
                    self._record(self._start, {}, initial=True)
                if (isinstance(self.schedule, str) and self._stored_last is not None
                        and self._trained > self._stored_last):
                    self._record(self._trained, self._last_logs)  # stopped early: the final state, as planned
                elif self._stored_last is not None and self._trained > self._stored_last:
                    self._write(self.store.add_event, "trained", f"fit ended after epoch {self._trained} "
                                f"(not a recorded epoch)", self._trained, weights=self._fingerprint())
                if not self._diverged:
                    done = (self._end is not None and self._trained >= self._end
                            and self._trained >= (self._stored_last or 0))  # a retraining behind the store is not
                    self._write(self.store.set_status, "complete" if done else "interrupted")
            self._check_writes(wait=True)
            self._wait_compile()  # jit_compile=True and XLA failed: say so even if no epoch needed it
        finally:
            self.close()
        if self.verbose:
            print(f"IBCallback: {self.directory} holds epochs up to {self._stored_last}")

    def close(self, reason: str = "closed before fit finished") -> None:
        """Wait for pending writes and release the store (also done at the end of ``fit``).

        Call it after a ``fit`` that raised (Keras then skips ``on_train_end``) to release the
        store's writer lock; calling ``fit`` again with the same callback does it automatically.
        A run still ``running`` at that point is marked ``interrupted`` (an event gives ``reason``);
        every committed epoch stays.
        """
        if self._members is not None:
            self._members.close(reason)
        self._wait_compile(raise_errors=False)  # a failure was raised in fit already, or is moot now
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.shutdown()  # a failed write was raised in fit already
        if self.store is not None:
            store, self.store = self.store, None
            try:
                if store.status == "running":
                    store.add_event("interrupted", reason, store.last_epoch)
                    store.set_status("interrupted")
            finally:
                store.close()

    def _member_recorders(self):
        """The recorders of a stacked model's members (made once per callback, see the stacking docs)."""
        if self._members is None:
            from .stacking.recording import MemberRecorders

            self._members = MemberRecorders(self)
        return self._members

    # ------------------------------------------------------------------ store writes
    def _write(self, fn, *args, **kwargs) -> None:
        """Run one store mutation: on the background writer (in order, at most two epochs in flight) or
        right here."""
        if self._writer is None:
            fn(*args, **kwargs)
        else:
            self._writer.submit(fn, *args, **kwargs)

    def _check_writes(self, wait: bool = False) -> None:
        """Re-raise, in the training thread, the first error of a finished (or, with wait, any) write."""
        if self._writer is not None:
            self._writer.check(wait)

    # ------------------------------------------------------------------ recording
    def _planned(self, current: int, end: int) -> set[int]:
        if isinstance(self.schedule, str):
            planned = epoch_schedule(self.schedule, end, self.n_points)
        else:
            wanted = np.asarray(self.schedule)
            planned = epoch_schedule(self.schedule, max(end, int(wanted.max())), self.n_points)
        after = self._stored_last if self._stored_last is not None else -1  # retrained epochs are not re-recorded
        return {int(e) for e in planned if current < e <= end and e > after}

    def _extract(self, initial: bool) -> dict[str, np.ndarray]:
        """All taps now, as read-only views (no copy; the store only reads them).  While XLA still
        compiles, the initial state of a new store (``initial``) comes from the layers run eagerly
        (no trace: a plain graph would first be traced, which costs more than running eagerly once); every
        other epoch waits for the
        compilation and runs its result."""
        if self._compiling is not None:
            if initial:
                return self._extractor.views(self._prepared, eager=True)
            self._wait_compile()
        return self._extractor.views(self._prepared)

    def _wait_compile(self, raise_errors: bool = True) -> None:
        """Wait for the background XLA compilation; its error (``jit_compile=True``) is raised here."""
        compiling, self._compiling = self._compiling, None
        if compiling is not None:
            if raise_errors:
                compiling.result()
            else:
                compiling.exception()

    def _record(self, epoch: int, logs, metrics=None, initial: bool = False) -> None:
        """Extract, check and commit ``epoch``; ``metrics``: ``scalar_metrics(logs)`` when already known."""
        acts = self._extract(initial)
        bad = [name for name, a in acts.items() if not all_finite(a)]
        if bad:
            self._diverge(epoch, f"non-finite activations in {bad} at epoch {epoch}")
            return
        metrics = scalar_metrics(logs) if metrics is None else metrics
        live = self._estimate(epoch, acts)
        metrics.update(live)
        if logs is not None and live:
            logs.update(live)  # the same dict reaches History and later callbacks
        weights = None if self._extractor.weights is None else fingerprint_values(self._extractor.weights)
        self._write(self.store.append, epoch, acts, metrics=metrics, weights=weights)
        self._stored_last = epoch

    # ------------------------------------------------------------------ continuing a store
    @property
    def last_committed(self) -> int | None:
        """The last epoch committed to the store (pending background writes waited for), or None."""
        self._check_writes(wait=True)
        return self._stored_last

    @property
    def trained_epochs(self) -> int:
        """Epochs the model has completed, in the store's numbering."""
        return self._trained

    def _continued_epoch(self) -> int | None:
        """The store epoch whose weights the model has now (:func:`ibtoolkit.continuation.continued_epoch`:
        StoreError for a model at none of the store's states)."""
        return continued_epoch(self.directory, self._fingerprint())

    def _note_retraining(self, continued: int | None) -> int | None:
        """When the model continues from an epoch before the store's last, say in the store that the
        epochs after it are trained again (and not recorded twice); return the last of them."""
        last = self._stored_last
        if continued is None or last is None or continued >= last:
            return None
        message = retraining_message(continued, last)
        self._write(self.store.add_event, "retrained", message, continued)
        warnings.warn(f"IBCallback: {self.directory}: {message}", RuntimeWarning, stacklevel=3)
        self._retrain_states = self.store.weight_states
        return last

    def _check_retrained(self, epoch: int) -> None:
        """At the store's last epoch of a retraining: did it reproduce the recorded weights?"""
        now = self._fingerprint()
        message = retrained_check_message(epoch, now, (self._retrain_states.get(epoch) or [None])[0])
        self._write(self.store.add_event, "retrained_check", message, epoch, weights=now)

    def _estimate(self, epoch: int, acts) -> dict[str, float]:
        out = {}
        for i, (name, est) in enumerate(zip(self._estimator_names, self.estimators)):
            prefix = log_prefix(i, name)
            for tap in self.taps:
                try:
                    t = np.array(acts[tap.name])  # a writable copy: the extraction hands out read-only views
                    result = est.estimate(self._x_est, t, self.y)
                except ValueError as exc:  # reported in the store and warned about; training goes on
                    message = f"estimator {name!r} failed on layer {tap.name!r} at epoch {epoch}: {exc}"
                    self._write(self.store.add_event, "estimator_failed", message, epoch)
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
                    continue
                out[f"{prefix}/{tap.name}/ixt"] = result.ixt
                out[f"{prefix}/{tap.name}/ity"] = result.ity
        return out

    def _diverge(self, epoch: int, message: str) -> None:
        self._diverged = True
        self._write(self.store.add_event, "diverged", message, epoch)
        self._write(self.store.set_status, "diverged")
        if not self._warned:
            self._warned = True
            warnings.warn(f"IBCallback: training diverged ({message}); recording stopped, epochs up to "
                          f"{self._stored_last} are kept in {self.directory}", DivergenceWarning, stacklevel=2)
