"""Representation taps: which tensor of a network *is* a layer's representation T, and how to read it.

Following the information-plane convention (Shwartz-Ziv & Tishby 2017; Raj, Nayak & Kalyani 2020),
the representation of a hidden layer is what the next layer actually consumes, in inference mode
(``training=False``):

* the tap follows the data from the layer to the next weight-bearing layer, past every
  *passthrough* layer on the way (one consumer each): pooling (max, average, global), ``Flatten``,
  ``Reshape``, padding and cropping, normalisation, activation, dropout and noise layers;
* a Larq consumer's ``input_quantizer`` is then applied, e.g. QuantConv2D -> MaxPool2D ->
  BatchNorm -> Flatten -> QuantDense taps :math:`T = \\operatorname{sign}(\\operatorname{flatten}(
  \\operatorname{BN}(\\operatorname{pool}(h)))) \\in \\{-1,+1\\}^d` (sign(0) = +1), the 256 codes the
  dense layer reads, not the 1024 raw conv outputs;
* a full-precision consumer: the tensor after the passthrough layers (the activation output).

**Branch rule.**  The walk stops where the data stops being one layer's alone: at a layer with
several consumers (a residual block's skip and main path) or before a merge layer (``Add``,
``Concatenate``...).  The tap is the tensor at that point; the consumers' input quantizer is applied
only when every consumer is a Larq layer with the same input quantizer (they all read the same
codes), since a merge mixes this layer's data with another's.  :attr:`Tap.rule` and
:attr:`Tap.tensor_description` say which case applied and which tensor was taken; the callback
writes both into the store's manifest (``model.taps``).

**Declared discreteness.**  :attr:`Tap.levels` is the number of values the consumer's input
quantizer can output (2 for Larq's sign quantizers and ``SteHeaviside``, 3 for ``SteTern``,
:math:`2^k` for ``DoReFa(k_bit=k)``), None for a continuous tap; ``binary`` is true only for the
±1 sign quantizers.  Discrete estimators (``exact``) trust this declaration, never a count of
levels in the data.

:func:`representation_taps` finds the taps of any built tf-keras Sequential or functional model
(by default every hidden weight-bearing layer, the output layer excluded, or the layers named in
``layers``).  :func:`ibtoolkit.extractor.make_extractor` (also importable from here) compiles ONE
``tf.function`` that computes all taps at once.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import _keras

_keras.ensure_legacy_keras()

__all__ = ["Tap", "representation_taps", "make_extractor", "Extractor", "quantizer_levels", "quantizer_name"]


@dataclass(frozen=True)
class Tap:
    """One representation tap.

    Attributes
    ----------
    name : str
        Name of the layer whose representation this is (e.g. ``hidden_2``).
    width : int
        Number of units d (the product of the non-batch dimensions; taps are flattened to (N, d)).
    binary : bool
        True when every value is ±1 (the consumer's input quantizer is a sign quantizer).
    tensor : KerasTensor
        The symbolic tensor the next layer consumes (after the passthrough layers and the
        consumer's input quantizer, wrapped in a ``Lambda`` layer named ``tap_<name>``).
    source : str
        Name of the layer whose output is taken (``name`` itself or the last passthrough after it).
    quantizer : callable or None
        The consumer's input quantizer that was applied, if any.
    levels : int or None
        Values the quantizer can output (the tap is discrete), None for a continuous tap.
    rule : str
        How the walk ended: ``"consumer"`` (one next layer), ``"branch"`` (several consumers),
        ``"merge"`` (the next layer merges several inputs) or ``"output"`` (a model output).
    tensor_description : str
        Which tensor was taken, e.g. ``"ste_sign(flat) as read by qdense"``.
    """

    name: str
    width: int
    binary: bool
    tensor: Any = field(repr=False, compare=False)
    source: str = ""
    quantizer: Any = field(default=None, repr=False, compare=False)
    levels: int | None = None
    rule: str = "consumer"
    tensor_description: str = ""

    @property
    def discrete(self) -> bool:
        """True when the consumer's quantizer declares a finite set of values."""
        return self.levels is not None

    def describe(self) -> dict:
        """JSON-friendly description for the store's manifest (``model.taps``)."""
        return {"name": self.name, "width": self.width, "binary": self.binary, "source": self.source,
                "quantizer": quantizer_name(self.quantizer), "discrete": self.discrete, "levels": self.levels,
                "rule": self.rule, "tensor": self.tensor_description}


_PASSTHROUGH_NAMES = (
    # normalisation, activation, dropout and noise
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization", "Activation", "ReLU",
    "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU", "Dropout", "AlphaDropout", "GaussianDropout",
    "GaussianNoise", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "ActivityRegularization",
    # pooling
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    # shape only
    "Flatten", "Reshape", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D",
)


def _passthrough_types():
    """Layer classes the tap walks past: they change neither which data flows nor its owner."""
    import tensorflow as tf

    L = tf.keras.layers
    return tuple(getattr(L, name) for name in _PASSTHROUGH_NAMES if hasattr(L, name))


def _merge_types():
    import tensorflow as tf

    return (tf.keras.layers.Add, tf.keras.layers.Concatenate, tf.keras.layers.Subtract, tf.keras.layers.Multiply,
            tf.keras.layers.Average, tf.keras.layers.Maximum, tf.keras.layers.Minimum, tf.keras.layers.Dot)


def quantizer_name(quantizer) -> str | None:
    """A readable name of a Larq quantizer (object, function or name), None for none."""
    if quantizer is None:
        return None
    if isinstance(quantizer, str):
        return quantizer
    if isinstance(quantizer, type) or hasattr(quantizer, "__name__"):
        return quantizer.__name__
    # a quantizer object: its class in snake case (SteSign -> ste_sign); its name gets _2, _3... suffixes
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(quantizer).__name__).lower()


def quantizer_levels(quantizer) -> int | None:
    """Number of values a Larq *input* quantizer outputs, or None when it is not declared discrete.

    Sign quantizers (``ste_sign``, ``approx_sign``, ``swish_sign``) and ``SteHeaviside``: 2;
    ``SteTern``: 3 (-1, 0, +1); ``DoReFa(k_bit=k, mode="activations")``: :math:`2^k`.  Anything
    else (no quantizer, ``NoOp``, an unknown callable) is continuous: None.
    """
    from .models import is_sign_quantizer

    if quantizer is None:
        return None
    if is_sign_quantizer(quantizer):
        return 2
    import larq as lq

    q = lq.quantizers
    if isinstance(quantizer, str):
        try:
            quantizer = q.get(quantizer)
        except (ValueError, TypeError):
            return None
    if isinstance(quantizer, q.SteHeaviside) or quantizer is getattr(q, "ste_heaviside", None):
        return 2
    if isinstance(quantizer, q.SteTern) or quantizer is getattr(q, "ste_tern", None):
        return 3
    if isinstance(quantizer, q.DoReFa) and getattr(quantizer, "mode", "activations") == "activations":
        return 2 ** int(quantizer.precision)
    return None


def _consumers(layer, members: set[int]):
    """Layers of the model (ids in ``members``) that take ``layer``'s output."""
    out = []
    for node in getattr(layer, "_outbound_nodes", []):
        consumer = node.outbound_layer
        if id(consumer) in members and consumer not in out:
            out.append(consumer)
    return out


def _output_of(layer):
    try:
        return layer.output
    except AttributeError as exc:
        raise ValueError(f"layer {layer.name!r} has no single symbolic output ({exc}); build the model on an "
                         f"Input (functional or Sequential with input_shape) and call each layer once") from exc


def representation_taps(model, layers: Sequence[str] | None = None) -> list[Tap]:
    """Find the representation taps of a built tf-keras model.

    Parameters
    ----------
    model : tf.keras.Model
        A built Sequential or functional model with one input.
    layers : sequence of str or None
        Names of the layers to tap (any layer, the output layer included).  Default: every
        weight-bearing hidden layer (``Dense``, ``QuantDense``, convolutions...) in depth order,
        excluding passthrough layers (BatchNorm, Activation, Dropout...) and the output layer.

    Returns
    -------
    list of Tap, in the order of ``model.layers`` (depth order) or of ``layers`` when given.

    Raises
    ------
    ValueError
        If the model is not built on a symbolic input, has several inputs, a name is unknown or
        repeated, or there is no hidden layer to tap.
    """
    import tensorflow as tf

    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"model must be a tf.keras Model (Keras 2, via tf.keras after importing ibtoolkit), "
                         f"got {type(model).__module__}.{type(model).__name__}")
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise ValueError(f"model {model.name!r} is not built on a symbolic Input; give Sequential models an "
                         f"input_shape (or a tf.keras.Input) so their layers have outputs to tap")
    if len(inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(inputs)} inputs; taps support single-input models")
    all_layers = [lyr for lyr in model.layers if not isinstance(lyr, tf.keras.layers.InputLayer)]
    members = {id(lyr) for lyr in all_layers}
    outputs = {id(t) for t in model.outputs}
    passthrough = _passthrough_types()

    if layers is None:
        chosen = []
        for lyr in all_layers:
            if isinstance(lyr, passthrough) or not lyr.weights:
                continue
            end, _ = _follow(lyr, members, passthrough)
            if id(_output_of(end)) in outputs:
                continue  # the output layer: excluded by default
            chosen.append(lyr)
        if not chosen:
            raise ValueError(f"model {model.name!r} has no hidden weight-bearing layer to tap; name the layers "
                             f"to tap with layers=[...]")
    else:
        if isinstance(layers, str):
            layers = [layers]
        names = list(layers)
        if not names:
            raise ValueError("layers is empty; give layer names or None for every hidden layer")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"layers names repeated: {duplicated}")
        by_name = {lyr.name: lyr for lyr in all_layers}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown layer name(s) {unknown} in model {model.name!r}; "
                             f"its layers are {list(by_name)}")
        chosen = [by_name[n] for n in names]
    return [_make_tap(lyr, members, passthrough) for lyr in chosen]


def _follow(layer, members, passthrough):
    """Walk past passthrough layers that are the single consumer of the data; return (last layer,
    its consumers)."""
    current = layer
    while True:
        consumers = _consumers(current, members)
        if len(consumers) == 1 and isinstance(consumers[0], passthrough) and _single_input(consumers[0]):
            current = consumers[0]
            continue
        return current, consumers


def _single_input(layer) -> bool:
    nodes = getattr(layer, "_inbound_nodes", [])
    return len(nodes) == 1 and len(nodes[0].keras_inputs) == 1


def _reading_quantizer(consumers, merges):
    """(quantizer, rule): the input quantizer every consumer applies to the tap, and the branch rule."""
    if not consumers:
        return None, "output"
    quantizers = [getattr(c, "input_quantizer", None) for c in consumers]
    if len(consumers) == 1:
        if isinstance(consumers[0], merges):
            return None, "merge"
        return quantizers[0], "consumer"
    first = quantizers[0]
    same = first is not None and not any(isinstance(c, merges) for c in consumers) and all(
        q is not None and type(q) is type(first) and _quantizer_config(q) == _quantizer_config(first)
        for q in quantizers)
    return (first if same else None), "branch"


def _quantizer_config(quantizer):
    get_config = getattr(quantizer, "get_config", None)
    if not callable(get_config):
        return quantizer
    return {k: v for k, v in get_config().items() if k != "name"}  # names get _2, _3... suffixes


def _make_tap(layer, members, passthrough) -> Tap:
    import tensorflow as tf

    from .models import is_sign_quantizer

    end, consumers = _follow(layer, members, passthrough)
    tensor = _output_of(end)
    quantizer, rule = _reading_quantizer(consumers, _merge_types())
    readers = ", ".join(c.name for c in consumers)
    if quantizer is not None:
        tensor = tf.keras.layers.Lambda(lambda t, q=quantizer: q(t), name=f"tap_{layer.name}")(tensor)
        description = f"{quantizer_name(quantizer)}({end.name}) as read by {readers}"
    elif rule == "output":
        description = f"{end.name} (a model output)"
    else:
        description = f"{end.name} as read by {readers}"
    shape = tensor.shape[1:]
    if any(s is None for s in shape):
        raise ValueError(f"layer {layer.name!r} has an output of unknown size {tuple(tensor.shape)}; "
                         f"taps need fixed non-batch dimensions")
    width = int(math.prod(int(s) for s in shape))
    return Tap(name=layer.name, width=width, binary=is_sign_quantizer(quantizer), tensor=tensor,
               source=end.name, quantizer=quantizer, levels=quantizer_levels(quantizer), rule=rule,
               tensor_description=description)


# The extraction moved to its own module; these names stay importable from here.
from .extractor import Extractor, _flat_entry, check_jit_compile, make_extractor  # noqa: E402,F401
