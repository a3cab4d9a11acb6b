"""Recording a stacked model: one extraction per recorded epoch, one ordinary store per member.

:class:`~ibtoolkit.IBCallback` given a :class:`~ibtoolkit.stacking.StackedModel` hands its work to
:class:`MemberRecorders`: one compiled function computes every tap of every member on the analysis
set at once (the member-axis graph on the inputs broadcast to (N, S, ...), or each member's graph side
by side), and one ordinary ``IBCallback`` per member (:class:`MemberCallback`) writes the member's
store at ``<directory>/<member name>/`` from its slice of that result: its own manifest (the member's
model, taps and run metadata), its metrics under the ordinary names (``<member>/loss`` becomes
``loss``, ``val_<member>/accuracy`` becomes ``val_accuracy``), its schedule, divergence events and
status.  A member whose own loss or activations turn non-finite stops its own recording only; the
others go on (no member's arithmetic touches another's).

The taps of member s are those :func:`ibtoolkit.taps.representation_taps` finds in member s as an
ordinary model (``stacked.member(s)``), so a member's store has the layer names, widths and codes
of an unstacked run of the same weights.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import _keras

_keras.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

from ..callback import IBCallback, default_directory  # noqa: E402
from ..taps import Tap, make_extractor, representation_taps  # noqa: E402
from .member_ops import member_map  # noqa: E402

__all__ = ["MemberRecorders", "MemberCallback", "member_logs", "stacked_extraction"]


def member_logs(logs, name: str) -> dict:
    """Member ``name``'s entries of a stacked model's Keras logs under their ordinary names."""
    out = {}
    prefix, val_prefix = f"{name}/", f"val_{name}/"
    for key, value in (logs or {}).items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = value
        elif key.startswith(val_prefix):
            out["val_" + key[len(val_prefix):]] = value
    return out


def _per_member(value, names):
    """``value`` keyed by member name (a dict whose keys are exactly the members), else the same for all."""
    if isinstance(value, dict) and value and set(value) == set(names):
        return [value[n] for n in names]
    return [value] * len(names)


def stacked_extraction(stacked, member_models, layers, batch_size, jit_compile):
    """The taps of every member and ONE extractor computing them all.

    Returns ``(taps, extractor, slices)``: ``taps[s]`` member s's taps; ``extractor(x)`` maps the
    analysis inputs (N, ...) to named arrays; ``slices[s]`` lists ``(tap name, array name, start,
    stop)``: member s's tap is ``columns start:stop`` of that array.
    """
    taps = [representation_taps(m, layers) for m in member_models]
    holder = stacked._members
    s = stacked.n_members
    inp = tf.keras.Input(shape=tuple(stacked.inputs[0].shape[2:]), dtype=stacked.inputs[0].dtype, name="x")
    entries, slices = [], [[] for _ in range(s)]
    if stacked.path == "member-axis":
        source = member_models[0]
        index = {lyr.name: i for i, lyr in enumerate(source.layers)}
        tensors = []
        for k, tap in enumerate(taps[0]):
            out = holder.layer_of[index[tap.source]].output
            quantizer = tap.quantizer
            tensors.append(tf.keras.layers.Lambda(
                lambda t, q=quantizer, w=tap.width: tf.reshape(member_map(q, t, axis=1), (-1, s * w)),
                name=f"members_tap_{k}")(out))
        sub = tf.keras.Model(stacked.inputs, tensors)
        xs = tf.keras.layers.Lambda(lambda t: tf.broadcast_to(tf.expand_dims(t, 1), (tf.shape(t)[0], s, *t.shape[1:])),
                                    name="members_broadcast")(inp)
        outs = sub(xs)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for k, (tap, out) in enumerate(zip(taps[0], outs)):
            entries.append(Tap(name=f"tap{k}", width=s * tap.width, binary=tap.binary, tensor=out))
            for m in range(s):
                slices[m].append((taps[m][k].name, f"tap{k}", m * tap.width, (m + 1) * tap.width))
    else:
        for m, (copy, member_taps) in enumerate(zip(holder.copies, taps)):
            own = representation_taps(copy, layers)
            sub = tf.keras.Model(copy.inputs, [t.tensor for t in own])
            outs = sub(inp)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for k, (tap, out) in enumerate(zip(member_taps, outs)):
                flat = tf.keras.layers.Reshape((tap.width,), name=f"member{m}_tap{k}")(out)
                entries.append(Tap(name=f"member{m}_tap{k}", width=tap.width, binary=tap.binary, tensor=flat))
                slices[m].append((tap.name, f"member{m}_tap{k}", 0, tap.width))
    model = tf.keras.Model(inp, [e.tensor for e in entries], name=f"{stacked.name}_members")
    return taps, make_extractor(model, entries, batch_size, jit_compile), slices


class _MemberWeights:
    """Stands for a member's extractor in its callback: the member's current weights, flat (what a
    commit's fingerprint is computed from, :mod:`ibtoolkit.fingerprint`)."""

    def __init__(self, stacked, index: int):
        self._stacked, self._index = stacked, index
        self.jit_compiled = True

    @property
    def weights(self) -> np.ndarray:
        parts = self._stacked.member_weights(self._index)
        return np.concatenate([np.ravel(p).astype(np.float32) for p in parts]) if parts else np.zeros(0, np.float32)

    def fingerprint(self) -> str:
        from ..fingerprint import fingerprint_values

        return fingerprint_values(self.weights)


class MemberCallback(IBCallback):
    """The ``IBCallback`` of one member: an ordinary store, fed from the shared extraction."""

    def __init__(self, shared: "MemberRecorders", index: int, taps, **kwargs):
        super().__init__(**kwargs)
        self._shared, self._index = shared, index
        self.taps = taps

    def _extract(self, initial: bool):
        return self._shared.member_activations(self._index, initial)


class MemberRecorders:
    """Drives one :class:`MemberCallback` per member from the stacked model's callback ``parent``."""

    def __init__(self, parent: IBCallback):
        self.parent = parent
        self.model = None
        self.members: list[MemberCallback] = []
        self._slices = None
        self._acts = None

    # ------------------------------------------------------------------ shared extraction
    def member_activations(self, index: int, initial: bool) -> dict[str, np.ndarray]:
        """Member ``index``'s taps now: one extraction call for all members per epoch."""
        if self._acts is None:
            self._acts = self.parent._extract(initial)
        return {tap: np.ascontiguousarray(self._acts[entry][:, start:stop])
                for tap, entry, start, stop in self._slices[index]}

    def _setup(self, model) -> None:
        parent = self.parent
        names = model.member_names
        member_models = [model.member(i) for i in range(model.n_members)]
        taps, extractor, self._slices = stacked_extraction(model, member_models, parent.layers, parent.batch_size,
                                                           parent.jit_compile)
        parent.taps = [t for member_taps in taps for t in member_taps]
        parent._extractor = extractor
        parent._prepared = extractor.prepare(parent.x)
        parent._model_id = id(model)
        if extractor.jit_compiled is None:  # XLA compiles beside Keras' tracing of epoch 1, as unstacked
            extractor.trace(True)
            compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="IBCallback-xla")
            parent._compiling = compiler.submit(extractor.compile, parent._prepared)
            compiler.shutdown(wait=False)
        if parent.directory is None:
            parent.directory = default_directory(model.name)
        runs = _per_member(parent.run, names)
        datasets = _per_member(parent.dataset, names)
        self.members = []
        for i, (name, member) in enumerate(zip(names, member_models)):
            cb = MemberCallback(self, i, taps[i], x=parent.x, y=parent.y, directory=parent.directory / name,
                                schedule=parent.schedule, n_points=parent.n_points, layers=parent.layers,
                                estimators=parent.estimators, dataset=datasets[i], batch_size=parent.batch_size,
                                dtype=parent.dtype, verbose=0, background=parent.background, run=runs[i],
                                jit_compile=parent.jit_compile)
            cb.set_model(member)
            cb._extractor, cb._model_id = _MemberWeights(model, i), id(member)  # taps, extraction: shared
            cb._fingerprint = cb._extractor.fingerprint
            self.members.append(cb)
        self.model = model

    # ------------------------------------------------------------------ Keras events
    def on_train_begin(self, logs=None) -> None:
        model = self.parent.model
        if self.model is not model:
            self._setup(model)
        for cb in self.members:
            cb.set_params(self.parent.params)
            cb.on_train_begin(member_logs(logs, cb.model.name))
        if self.parent.verbose:
            print(f"IBCallback: recording {len(self.members)} members of {model.name!r} ({model.path} path) "
                  f"to {self.parent.directory}/<member>")

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._acts = None
        for cb, name in zip(self.members, self.model.member_names):
            cb.on_epoch_begin(epoch, member_logs(logs, name))
        self._acts = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._acts = None
        for cb, name in zip(self.members, self.model.member_names):
            own = member_logs(logs, name)
            before = set(own)
            cb.on_epoch_end(epoch, own)
            if logs is not None:  # live estimates reach History under the member's name
                logs.update({f"{name}/{k}": v for k, v in own.items() if k not in before})
        self._acts = None

    def on_train_end(self, logs=None) -> None:
        errors = []
        for cb, name in zip(self.members, self.model.member_names):
            try:
                cb.on_train_end(member_logs(logs, name))
            except Exception as exc:  # noqa: BLE001 - every member's store is closed before raising
                errors.append(exc)
        self._acts = None
        self.parent._wait_compile()
        if errors:
            raise errors[0]

    def close(self, reason: str) -> None:
        for cb in self.members:
            cb.close(reason)
        self.parent._wait_compile(raise_errors=False)
