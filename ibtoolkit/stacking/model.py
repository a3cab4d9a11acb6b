"""``StackedModel``: S members trained as one tf-keras model, each with its own loss term and metrics.

Inputs are ``(N, S, ...)`` (member s reads ``x[:, s]``) and labels ``(N, S)`` (or ``(N, S, C)`` one-hot):
:meth:`StackedModel.member_data` builds them from ordinary data, member s reading the rows through its
own permutation, so one Keras shuffle of the N rows gives every member its own batches.

Loss.  With :math:`\\ell_s` member s's loss on its batch (the mean over the batch of its compiled loss
function, as Keras computes it for the model alone) and :math:`R_s` its regularisation penalty,

.. math::  L = \\sum_{s=1}^{S} \\big(\\ell_s + R_s\\big),
           \\qquad \\frac{\\partial L}{\\partial \\theta_s} = \\frac{\\partial (\\ell_s + R_s)}{\\partial \\theta_s},

because no member's output depends on another member's weights.  Adam, SGD (with momentum) and
RMSprop update every scalar parameter from its own gradient history alone, so member s's update is
the one it gets trained alone on the same batches (up to floating-point summation order).

Metrics.  Per member, the batch-size weighted mean over the epoch of its loss ``<member>/loss`` and
of each compiled metric ``<member>/<metric>`` (Keras adds ``val_`` in front for validation data);
``loss`` is the sum over members.
"""
from __future__ import annotations

import numpy as np

from .. import _keras

_keras.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

__all__ = ["StackedModel", "MemberMeans", "is_stacked"]


def is_stacked(model) -> bool:
    """True when ``model`` was made by :func:`ibtoolkit.models.stack`."""
    return isinstance(model, StackedModel)


class MemberMeans(tf.keras.metrics.Metric):
    """Per-member running means: state (S,) sums and a count; result ``{"<member>/<metric>": mean}``."""

    def __init__(self, members, metric: str, **kwargs):
        super().__init__(name=f"members_{metric}", **kwargs)
        self.members, self.metric = list(members), metric
        self.total = self.add_weight("total", shape=(len(self.members),), initializer="zeros")
        self.count = self.add_weight("count", shape=(), initializer="zeros")

    def update_state(self, sums, n):
        """``sums``: (S,) the members' values summed over ``n`` samples."""
        self.total.assign_add(tf.cast(sums, self.dtype))
        self.count.assign_add(tf.cast(n, self.dtype))

    def result(self):
        values = tf.unstack(tf.math.divide_no_nan(self.total, self.count))
        return {f"{m}/{self.metric}": v for m, v in zip(self.members, values)}

    def reset_state(self):
        self.total.assign(tf.zeros_like(self.total))
        self.count.assign(0.0)


class _Holder:
    """Plain container: Keras must not track the members' models as sub-layers of the stack."""

    def __init__(self, **items):
        self.__dict__.update(items)


def _resolve_metric(spec, loss_name: str):
    """A per-sample metric function for a compiled metric spec (as Keras resolves 'accuracy')."""
    if isinstance(spec, str) and spec in ("accuracy", "acc"):
        if "sparse_categorical" in loss_name:
            return "accuracy", tf.keras.metrics.sparse_categorical_accuracy
        if "binary" in loss_name:
            return "accuracy", tf.keras.metrics.binary_accuracy
        return "accuracy", tf.keras.metrics.categorical_accuracy
    fn = getattr(spec, "_fn", None) if isinstance(spec, tf.keras.metrics.Metric) else None
    if isinstance(spec, tf.keras.metrics.Metric):
        if fn is None:
            raise ValueError(f"metric {spec.name!r} keeps its own state; a stacked model supports per-sample "
                             f"metrics (functions, names, MeanMetricWrapper such as SparseCategoricalAccuracy)")
        return spec.name, fn
    fn = tf.keras.metrics.get(spec)
    if isinstance(fn, tf.keras.metrics.Metric):
        return _resolve_metric(fn, loss_name)
    return (spec if isinstance(spec, str) else fn.__name__), fn


def _resolve_loss(loss):
    if loss is None:
        raise ValueError("a stacked model needs a loss: compile(optimizer, loss=..., metrics=...)")
    if isinstance(loss, tf.keras.losses.Loss):
        fn = getattr(loss, "fn", None)
        if fn is None:
            raise ValueError(f"loss {loss.name!r} is not a per-sample loss function wrapper; give a Keras loss "
                             f"name or function such as 'sparse_categorical_crossentropy'")
        kwargs = dict(getattr(loss, "_fn_kwargs", {}))
        return loss.name, (lambda y, p, fn=fn, kw=kwargs: fn(y, p, **kw))
    fn = tf.keras.losses.get(loss)
    if isinstance(fn, tf.keras.losses.Loss):
        return _resolve_loss(fn)
    return (loss if isinstance(loss, str) else fn.__name__), fn


class StackedModel(tf.keras.Model):
    """S members side by side in one functional tf-keras model (made by :func:`ibtoolkit.models.stack`).

    Attributes
    ----------
    member_names : list of str
        The members' model names, in order (also the names of their metrics and stores).
    path : {"member-axis", "side-by-side"}
        ``"member-axis"``: one layer per depth computes every member (kernel (S, in, out)); the
        fast path.  ``"side-by-side"``: the members' own models run next to each other.
    path_reason : str
        Why the model got its path.
    """

    def __init__(self, inputs, outputs, *, members: _Holder, path: str, reason: str, name: str):
        super().__init__(inputs, outputs, name=name)
        self._members = members
        self.path = path
        self.path_reason = reason
        self._stack_loss = None

    # ---------------------------------------------------------------- members
    @property
    def member_names(self) -> list[str]:
        return list(self._members.names)

    @property
    def n_members(self) -> int:
        return len(self._members.names)

    def member(self, index) -> tf.keras.Model:
        """Member ``index`` (position or name) as an ordinary, independent model with its current
        weights (a copy: training it does not change the stack)."""
        i = self._member_index(index)
        source = self._members.sources[i]
        model = tf.keras.models.clone_model(source)
        model.set_weights(self.member_weights(i))
        return model

    def member_weights(self, index) -> list[np.ndarray]:
        """Member ``index``'s current weights, in the order of ``model.get_weights()`` of its model."""
        i = self._member_index(index)
        return self._members.get_weights(i)

    def _member_index(self, index) -> int:
        names = self._members.names
        if isinstance(index, str):
            if index not in names:
                raise ValueError(f"no member named {index!r}; members are {names}")
            return names.index(index)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(names) <= index < len(names):
            raise ValueError(f"member index must be a name or an integer in [0, {len(names)}), got {index!r}")
        return int(index) % len(names)

    def member_data(self, x, y=None, seeds=None):
        """Stack ordinary data for the members: ``x`` (N, ...) -> (N, S, ...), ``y`` (N, ...) -> (N, S, ...).

        ``seeds``: one integer per member, or None.  With seeds, member s reads the rows in the order
        ``numpy.random.default_rng(seeds[s]).permutation(N)`` (its own batches once Keras shuffles the N
        rows); without, every member reads them as given (validation data).  Returns ``x`` or ``(x, y)``.
        """
        x = np.asarray(x)
        s = self.n_members
        if seeds is None:
            index = np.broadcast_to(np.arange(x.shape[0])[:, None], (x.shape[0], s))
        else:
            seeds = [int(v) for v in seeds]
            if len(seeds) != s:
                raise ValueError(f"seeds must give one integer per member ({s}), got {len(seeds)}")
            index = np.stack([np.random.default_rng(v).permutation(x.shape[0]) for v in seeds], axis=1)
        xs = x[index]
        if y is None:
            return xs
        y = np.asarray(y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        return xs, y[index]

    # ---------------------------------------------------------------- training
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """As ``tf.keras.Model.compile``; ``loss`` and ``metrics`` act per member (see the module).

        ``loss_weights``, ``weighted_metrics`` and sample weights are not supported (every member's
        loss has weight 1, which keeps its updates those of separate training)."""
        for key in ("loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(f"{key} is not supported by a stacked model (each member's loss has weight 1)")
        for key in ("clipnorm", "global_clipnorm"):
            if getattr(tf.keras.optimizers.get(optimizer), key, None):
                raise ValueError(f"optimizer {key} clips the norm over all members' gradients together, which "
                                 f"couples them; use clipvalue (per parameter) or no clipping")
        loss_name, loss_fn = _resolve_loss(loss)
        resolved = [_resolve_metric(m, loss_name) for m in (metrics or [])]
        super().compile(optimizer=optimizer, **kwargs)
        names = self._members.names
        trackers = [tf.keras.metrics.Mean(name="loss"), MemberMeans(names, "loss")]
        trackers += [MemberMeans(names, metric_name) for metric_name, _ in resolved]
        object.__setattr__(self, "_stack_loss", loss_fn)
        object.__setattr__(self, "_stack_metric_fns", [fn for _, fn in resolved])
        object.__setattr__(self, "_stack_trackers", trackers)
        object.__setattr__(self, "_stack_compile", {"loss": loss, "metrics": list(metrics or [])})

    @property
    def metrics(self):
        return list(getattr(self, "_stack_trackers", [])) + super().metrics

    def _stack_per_member(self, fn, y, y_pred):
        """``fn`` per sample and member: (B, S)."""
        if isinstance(y_pred, (list, tuple)):  # side by side: one output per member
            return tf.stack([fn(y[:, s], p) for s, p in enumerate(y_pred)], axis=1)
        # member axis: (B*S, ...) rows, the shapes the function sees for a model alone (Keras squeezes
        # and reshapes labels by rank); the softmax's logits travel along, as Keras uses them for crossentropy
        n_members = y_pred.shape[1]
        flat_pred = tf.reshape(y_pred, (-1, *y_pred.shape[2:]))
        logits = getattr(y_pred, "_keras_logits", None)
        if logits is not None:
            flat_pred._keras_logits = tf.reshape(logits, (-1, *logits.shape[2:]))
        flat_true = tf.reshape(y, (-1, *y.shape[2:]))
        return tf.reshape(fn(flat_true, flat_pred), (-1, n_members))

    def _stack_losses(self, y, y_pred):
        per = tf.reduce_mean(self._stack_per_member(self._stack_loss, y, y_pred), axis=0)   # (S,)
        total = tf.reduce_sum(per)
        if self.losses:
            total = total + tf.add_n(self.losses)
        return per, total

    def _stack_update_metrics(self, y, y_pred, per, total):
        n = tf.cast(tf.shape(y)[0], tf.float32)
        trackers = self._stack_trackers
        trackers[0].update_state(total, sample_weight=n)
        trackers[1].update_state(per * n, n)
        for tracker, fn in zip(trackers[2:], self._stack_metric_fns):
            values = tf.cast(self._stack_per_member(fn, y, y_pred), tf.float32)
            tracker.update_state(tf.reduce_sum(values, axis=0), n)
        return self.get_metrics_result()

    def _stack_unpack(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("sample weights (and class_weight) are not supported by a stacked model")
        if self._stack_loss is None:
            raise ValueError("compile the stacked model first (stack() compiles it when its members were)")
        return x, y

    def train_step(self, data):
        x, y = self._stack_unpack(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            per, total = self._stack_losses(y, y_pred)
        self.optimizer.minimize(total, self.trainable_variables, tape=tape)
        return self._stack_update_metrics(y, y_pred, per, total)

    def test_step(self, data):
        x, y = self._stack_unpack(data)
        y_pred = self(x, training=False)
        per, total = self._stack_losses(y, y_pred)
        return self._stack_update_metrics(y, y_pred, per, total)

    def summary(self, *args, **kwargs):  # say which path the model got
        print_fn = kwargs.get("print_fn") or print
        print_fn(f"Stacked model {self.name!r}: {self.n_members} members {self.member_names}, "
                 f"{self.path} path ({self.path_reason})")
        return super().summary(*args, **kwargs)
