"""``stack(models)``: build one :class:`~ibtoolkit.stacking.model.StackedModel` from S built models.

Two paths, chosen per model and reported (``stacked.path``, ``stacked.path_reason``, ``summary()``):

* **member-axis** (fast): when every member has the same architecture (same layer types and
  settings, weights aside) and every layer has a member-axis form (:mod:`ibtoolkit.stacking.layers`:
  Dense/QuantDense, Conv2D/QuantConv2D, BatchNormalization, pooling, padding, Flatten, Reshape,
  activations, dropout, and merge layers on the last axis), the graph of the first member is cloned
  with each layer replaced by its member-axis form: one layer per depth for all S members.
* **side-by-side** (fallback): otherwise each member's own model (a copy) runs on its slice
  ``x[:, s]``, next to the others in one functional model.  Always exact, but every member adds its
  own ops, so it gains far less per model-epoch.

Either way member s starts from exactly member s's weights (copied, never shared with the model it
came from).
"""
from __future__ import annotations

import json

import numpy as np

from .. import _keras

_keras.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

from . import layers as _ml  # noqa: E402
from .model import StackedModel, _Holder  # noqa: E402

__all__ = ["stack", "PATHS"]

PATHS = ("auto", "member-axis", "side-by-side")


class _Unsupported(Exception):
    """A layer has no member-axis form (the reason is the message)."""


def _check_models(models, names):
    models = list(models)
    if not models:
        raise ValueError("stack needs at least one model")
    for m in models:
        if not isinstance(m, tf.keras.Model):
            raise ValueError(f"stack takes tf.keras models, got {type(m).__module__}.{type(m).__name__}")
        inputs = getattr(m, "inputs", None)
        if not inputs:
            raise ValueError(f"model {m.name!r} is not built on a symbolic Input; give Sequential models an "
                             f"input_shape (or build them on a tf.keras.Input)")
        if len(inputs) != 1 or len(m.outputs) != 1:
            raise ValueError(f"model {m.name!r} has {len(inputs)} inputs and {len(m.outputs)} outputs; stack "
                             f"takes single-input, single-output models")
    if names is None:
        names = [m.name for m in models]
    else:
        names = [str(n) for n in names]
        if len(names) != len(models):
            raise ValueError(f"names gives {len(names)} names for {len(models)} models")
    seen = {}
    for model, name in zip(models, names):
        if "/" in name or not name:
            raise ValueError(f"member name {name!r} of model {model.name!r} must be non-empty without '/' "
                             f"(it names the member's metrics and store directory)")
        if name in seen:
            raise ValueError(f"member name {name!r} is used twice (models {seen[name]!r} and {model.name!r}); "
                             f"member names must be unique: rename the models or pass names=[...]")
        seen[name] = model.name
    shape0 = tuple(models[0].inputs[0].shape[1:])
    for m in models[1:]:
        shape = tuple(m.inputs[0].shape[1:])
        if shape != shape0:
            raise ValueError(f"model {m.name!r} takes inputs of shape {shape}, but {models[0].name!r} takes "
                             f"{shape0}; stacked members must share the input shape")
    return models, names


def _signature(layer) -> str:
    """A layer's type and settings without its name, initialisers and seeds (weights aside)."""
    try:
        config = layer.get_config()
    except NotImplementedError:
        return f"{type(layer).__qualname__}:{id(layer)}"
    return type(layer).__qualname__ + json.dumps(_without_names(config), sort_keys=True, default=str)


def _without_names(config):
    """``config`` without names (of the layer and its quantizers), initialisers and seeds, recursively."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items()
                if k not in ("name", "seed") and not k.endswith("initializer")}
    if isinstance(config, (list, tuple)):
        return [_without_names(v) for v in config]
    return config


def _same_architecture(models) -> str | None:
    """None if every model has the first one's architecture, else the first difference."""
    ref = models[0]
    for m in models[1:]:
        if len(m.layers) != len(ref.layers):
            return f"{m.name!r} has {len(m.layers)} layers, {ref.name!r} {len(ref.layers)}"
        for a, b in zip(ref.layers, m.layers):
            if _signature(a) != _signature(b) or [w.shape for w in a.weights] != [w.shape for w in b.weights]:
                return f"layer {b.name!r} of {m.name!r} differs from {a.name!r} of {ref.name!r}"
    return None


def _layer_classes():
    import larq as lq

    L = tf.keras.layers
    elementwise = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Dropout, L.GaussianNoise,
                   L.GaussianDropout, L.AlphaDropout)
    fold = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
            L.AveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalAveragePooling1D,
            L.GlobalAveragePooling2D, L.ZeroPadding1D, L.ZeroPadding2D, L.Cropping1D, L.Cropping2D,
            L.UpSampling1D, L.UpSampling2D)
    merge = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
    return {"dense": (L.Dense, lq.layers.QuantDense), "conv": (L.Conv2D, lq.layers.QuantConv2D),
            "bn": (L.BatchNormalization,), "elementwise": elementwise, "fold": fold, "merge": merge}


def _member_layer(template, group):
    """The member-axis form of layer ``template`` given the members' corresponding layers ``group``."""
    kinds = _layer_classes()
    kind = type(template)
    if kind is tf.keras.layers.InputLayer:
        raise _Unsupported("input layers are made by clone_model")
    if getattr(template, "activity_regularizer", None) is not None:
        raise _Unsupported(f"layer {template.name!r} has an activity regulariser")
    initial = [np.stack(ws) for ws in zip(*[lyr.get_weights() for lyr in group])] if template.weights else []
    if kind in kinds["dense"]:
        if len(template.input_shape) != 2:
            raise _Unsupported(f"Dense layer {template.name!r} on inputs of rank {len(template.input_shape)}")
        return _ml.MemberDense(template, initial)
    if kind in kinds["conv"]:
        if template.data_format != "channels_last" or template.groups != 1:
            raise _Unsupported(f"Conv2D {template.name!r} is channels_first or grouped")
        return _ml.MemberConv2D(template, initial)
    if kind in kinds["bn"]:
        rank = len(template.input_shape)
        if (template.renorm or template.virtual_batch_size is not None or template.adjustment is not None
                or list(template.axis) != [rank - 1] or getattr(template, "synchronized", False)):
            raise _Unsupported(f"BatchNormalization {template.name!r} is not a plain last-axis batch norm")
        return _ml.MemberBatchNorm(template, initial)
    if template.weights:
        raise _Unsupported(f"layer {template.name!r} ({kind.__name__}) has weights and no member-axis form")
    if kind in kinds["elementwise"] or (kind is tf.keras.layers.Softmax and template.axis in (-1, [-1])):
        return _ml.MemberElementwise(template)
    if kind is tf.keras.layers.Flatten and template.data_format == "channels_last":
        return _ml.MemberReshape(template, template.output_shape[1:])
    if kind is tf.keras.layers.Reshape:
        return _ml.MemberReshape(template, template.output_shape[1:])
    if kind in kinds["fold"] and getattr(template, "data_format", "channels_last") == "channels_last":
        return _ml.MemberFold(template)
    if kind in kinds["merge"]:
        return _ml.MemberElementwise(template)
    raise _Unsupported(f"layer {template.name!r} ({kind.__name__}) has no member-axis form")


def _member_axis(models, names, name):
    """The member-axis graph, or raise _Unsupported with the reason."""
    template = models[0]
    position = {id(lyr): i for i, lyr in enumerate(template.layers)}
    mapping: dict[int, tf.keras.layers.Layer] = {}

    def clone(layer):
        i = position.get(id(layer))
        if i is None:
            raise _Unsupported(f"layer {layer.name!r} is nested or shared in an unsupported way")
        new = _member_layer(layer, [m.layers[i] for m in models])
        mapping[i] = new
        return new

    s = len(models)
    inp = tf.keras.Input(shape=(s, *template.inputs[0].shape[1:]), dtype=template.inputs[0].dtype,
                         name="members_input")
    try:
        cloned = tf.keras.models.clone_model(template, input_tensors=inp, clone_function=clone)
    except (ValueError, TypeError, NotImplementedError, AttributeError) as exc:
        raise _Unsupported(f"the graph could not be rebuilt with a member axis ({type(exc).__name__}: {exc})")
    weighted = [(i, mapping[i]) for i, lyr in enumerate(template.layers) if lyr.weights]

    def get_weights(member):
        out = []
        for _, layer in weighted:
            out.extend(layer.member_weights(member))
        return out

    holder = _Holder(names=list(names), sources=[tf.keras.models.clone_model(m) for m in models],
                     get_weights=get_weights, layer_of=mapping, kind="member-axis")
    return StackedModel(cloned.inputs, cloned.outputs, members=holder, path="member-axis",
                        reason="every layer has a member-axis form", name=name)


def _side_by_side(models, names, name, reason):
    s = len(models)
    inp = tf.keras.Input(shape=(s, *models[0].inputs[0].shape[1:]), dtype=models[0].inputs[0].dtype,
                         name="members_input")
    copies, outputs = [], []
    for i, (m, member_name) in enumerate(zip(models, names)):
        copy = tf.keras.models.clone_model(m)
        copy.set_weights(m.get_weights())
        copy._name = f"member_{i}"
        part = tf.keras.layers.Lambda(lambda t, i=i: t[:, i], name=f"member_{i}_input")(inp)
        outputs.append(copy(part))
        copies.append(copy)

    def get_weights(member):
        return copies[member].get_weights()

    holder = _Holder(names=list(names), sources=[tf.keras.models.clone_model(m) for m in models],
                     get_weights=get_weights, copies=copies, kind="side-by-side")
    return StackedModel(inp, outputs, members=holder, path="side-by-side", reason=reason, name=name)


def _compile_like(stacked, models):
    """Compile the stack as its members were compiled (they must agree); leave it alone if none was."""
    compiled = [m for m in models if getattr(m, "optimizer", None) is not None and m.compiled_loss is not None]
    if not compiled:
        return
    if len(compiled) != len(models):
        raise ValueError(f"models {[m.name for m in models if m not in compiled]} are not compiled but "
                         f"{[m.name for m in compiled]} are; compile all members alike, or none")
    ref = compiled[0]

    def settings(m):
        opt = m.optimizer.get_config()
        opt.pop("name", None)
        return json.dumps({"optimizer": [type(m.optimizer).__name__, opt], "loss": m.loss,
                           "metrics": m.compiled_metrics._user_metrics,
                           "steps": int(m._steps_per_execution.numpy()), "jit": m._jit_compile},
                          sort_keys=True, default=str)

    for m in compiled[1:]:
        if settings(m) != settings(ref):
            raise ValueError(f"model {m.name!r} is compiled differently from {ref.name!r} (optimizer, loss, "
                             f"metrics or steps_per_execution); stacked members share one compile, so compile "
                             f"them alike or compile the stack yourself")
    optimizer = type(ref.optimizer).from_config(ref.optimizer.get_config())
    stacked.compile(optimizer=optimizer, loss=ref.loss, metrics=list(ref.compiled_metrics._user_metrics or []),
                    steps_per_execution=int(ref._steps_per_execution.numpy()), jit_compile=ref._jit_compile)


def stack(models, names=None, *, name: str | None = None, path: str = "auto") -> StackedModel:
    """Train S models as one: ``stacked = stack([m0, m1, ...])``.

    Parameters
    ----------
    models : sequence of tf.keras.Model
        S built single-input, single-output models with the same input shape (Keras or Larq,
        Sequential or functional, convnets included).
    names : sequence of str or None
        Member names (default: the models' names); unique, without '/'.  They name each member's
        metrics (``<member>/loss``, ``val_<member>/accuracy``) and its store under an
        :class:`~ibtoolkit.IBCallback` directory (``<directory>/<member>/``).
    name : str or None
        Name of the stacked model (default ``stack_<S>_<first member>``).
    path : {"auto", "member-axis", "side-by-side"}
        ``"auto"``: the member-axis fast path when possible, else side by side (see the module).
        ``"member-axis"`` raises ValueError with the reason when it is not possible.

    Returns
    -------
    StackedModel
        Inputs (N, S, ...) and labels (N, S) (:meth:`StackedModel.member_data` builds them).  If the
        members were compiled (alike), the stack is compiled with the same optimizer settings (a
        fresh optimizer: its state starts empty), loss, metrics, ``steps_per_execution`` and
        ``jit_compile``; otherwise compile it yourself.  ``stacked.member(i)`` gives member i back as
        an ordinary model.

    Raises
    ------
    ValueError
        Mismatched input shapes, duplicate member names, models that are not built single-input
        single-output tf-keras models, or members compiled differently (each naming the model).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    models, names = _check_models(models, names)
    name = name or f"stack_{len(models)}_{names[0]}"
    reason = _same_architecture(models)
    stacked = None
    if path != "side-by-side":
        if reason is None:
            try:
                stacked = _member_axis(models, names, name)
            except _Unsupported as exc:
                reason = str(exc)
        else:
            reason = f"members differ: {reason}"
        if stacked is None and path == "member-axis":
            raise ValueError(f"no member-axis form for these models: {reason}")
    if stacked is None:
        stacked = _side_by_side(models, names, name, reason or "side-by-side path requested")
    _compile_like(stacked, models)
    return stacked
