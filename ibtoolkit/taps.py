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
``layers``).  :func:`make_extractor` compiles ONE ``tf.function`` that computes all taps at once,
batched so that large analysis sets (60 000 x 1024) never need the whole forward pass in memory.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

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


def check_jit_compile(value):
    """Return ``value`` if it is a valid ``jit_compile`` option (True, False or ``"auto"``), else ValueError."""
    if not (value is True or value is False or value == "auto"):
        raise ValueError(f"jit_compile must be True, False or 'auto', got {value!r}")
    return value


class Extractor:
    """All taps of a model computed by one compiled ``tf.function`` in inference mode.

    ``extractor(x)`` returns ``{tap name: float32 array (N, width)}``.  The input is cut into
    batches of ``batch_size`` rows; every batch runs the same traced graph (the batch dimension is
    left open in the input signature, so the function is traced once).  :meth:`prepare` converts an
    analysis set to tensors once, so a callback pays no conversion per epoch.

    ``jit_compile``: ``"auto"`` (default) compiles the graph with XLA, which fuses the many small ops
    of a narrow network into a few kernels (``benchmarks/bench_callback.py`` times both graphs), and
    falls back to the plain
    graph when XLA cannot compile the model; ``True`` requires XLA (``RuntimeError`` if it fails);
    ``False`` never uses it.  :attr:`jit_compiled` says which graph ordinary calls run: ``None``
    until XLA has been tried, then ``True`` or ``False``.  XLA's ``tanh``/``sigmoid`` are different
    float32 approximations from TensorFlow's and it fuses and reorders arithmetic: continuous taps
    may differ from ``model.predict`` by float32 rounding (``tests/test_callback.py`` bounds it); ±1
    taps are the same.

    Compiling happens once (the first XLA call of each batch shape).  :meth:`compile` does
    it ahead of time and may run on another thread while this one makes ``eager=True`` calls, which
    run the layers op by op whatever ``jit_compile`` says (or ``plain=True`` calls, the plain graph);
    :class:`~ibtoolkit.IBCallback` records the state before training eagerly while XLA compiles
    beside Keras' own tracing of the first epoch, so only the XLA graph is ever traced.
    """

    def __init__(self, model, taps: Sequence[Tap], batch_size: int = 4096, jit_compile="auto", weights=None):
        import tensorflow as tf

        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        check_jit_compile(jit_compile)
        taps = list(taps)
        if not taps:
            raise ValueError("make_extractor needs at least one tap")
        self.taps = taps
        self.names = [t.name for t in taps]
        self.weights: np.ndarray | None = None  # with weights=[...]: their values at the last call
        self.widths = {t.name: t.width for t in taps}
        self.batch_size = int(batch_size)
        self.jit_compile = jit_compile
        self.jit_compiled: bool | None = False if jit_compile is False else None
        inp = model.inputs[0]
        self._input_shape = tuple(inp.shape[1:])
        self._input_dtype = inp.dtype
        sub = tf.keras.Model(model.inputs, [t.tensor for t in taps], name=f"{model.name}_taps")
        self._sub = sub

        def run(x):
            outs = sub(x, training=False)
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            # reshape only what is not already (N, width): every graph op adds a fixed cost per call
            taps_out = [tf.cast(o if o.shape.rank == 2 and o.shape[1] == w else tf.reshape(o, (tf.shape(x)[0], w)),
                                tf.float32) for o, w in zip(outs, self.widths.values())]
            return taps_out + self._weights_out(weights)

        self._eager = run  # the same computation, op by op: no trace (see views)

        spec = tf.TensorSpec((None, *self._input_shape), self._input_dtype)
        self._fns = {xla: tf.function(run, input_signature=[spec], jit_compile=xla)
                     for xla in ([True, False] if jit_compile else [False])}
        self._graphs: dict = {}  # xla flag -> the concrete function of its one trace (see trace)
        self._entries: dict = {}  # xla flag -> how calls run that trace (see _flat_entry)
        self._compiled_shapes: set = set()  # batch shapes XLA has compiled (a failure shows on the first call)

    @staticmethod
    def _weights_out(weights) -> list:
        """All ``weights`` as one flat float32 tensor (an extra output, for the weights' fingerprint:
        the same bytes as concatenating ``v.numpy()``; nearly free inside the extraction's graph)."""
        import tensorflow as tf

        if not weights:
            return []
        return [tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in weights], axis=0)]

    def prepare(self, x) -> list:
        """Convert ``x`` (N, ...) to a list of batch tensors, checked against the model's input shape."""
        import tensorflow as tf

        arr = np.asarray(x)
        if arr.ndim < 1 or tuple(arr.shape[1:]) != tuple(int(s) for s in self._input_shape):
            raise ValueError(f"x has shape {arr.shape}; the model expects (N, {', '.join(map(str, self._input_shape))})")
        if arr.shape[0] == 0:
            raise ValueError("x is empty: it has no samples")
        arr = arr.astype(self._input_dtype.as_numpy_dtype, copy=False)
        return [tf.constant(arr[i:i + self.batch_size]) for i in range(0, arr.shape[0], self.batch_size)]

    def trace(self, xla: bool | None = None):
        """Trace (once) and return the concrete function of the XLA (``xla=True``) or plain graph;
        ``None``: the one ordinary calls use.  The signature fixes the trace, so the extractor calls
        it directly (by its flat entry point, :func:`_flat_entry`), skipping ``tf.function``'s
        argument binding and trace lookup; variables are captured by reference, so it always sees
        the current weights."""
        if xla is None:
            xla = self.jit_compiled is not False
        graph = self._graphs.get(xla)
        if graph is None:
            graph = self._graphs[xla] = self._fns[xla].get_concrete_function()
        return graph

    def compile(self, x) -> bool:
        """Compile the XLA graph now for every batch shape of ``x`` (a list from :meth:`prepare` or an
        array), by running it once per shape and discarding the result; return :attr:`jit_compiled`.
        With ``jit_compile="auto"`` a failure selects the plain graph; with ``True`` it raises
        ``RuntimeError``.  Trace first (:meth:`trace`) on the thread that owns the model when this runs
        on another one."""
        if self.jit_compiled is not False:
            batches = x if isinstance(x, list) else self.prepare(x)
            for batch in {tuple(b.shape): b for b in batches}.values():
                if self._run_xla(batch) is None:
                    break
        return bool(self.jit_compiled)

    def _run(self, batch, plain: bool = False, eager: bool = False) -> list:
        """The taps of one batch: XLA unless ``plain`` or it failed to compile (then the plain graph);
        ``eager``: the model's layers run op by op."""
        if eager:
            return self._eager(batch)
        if not plain and self.jit_compiled is not False:
            outs = self._run_xla(batch)
            if outs is not None:
                return outs
        return self._entry(False)(batch)

    def _entry(self, xla: bool):
        """``batch -> list of tap tensors`` by the traced graph (``xla`` or plain), tracing it once."""
        entry = self._entries.get(xla)
        if entry is None:
            entry = self._entries[xla] = _flat_entry(self.trace(xla))
        return entry

    def _run_xla(self, batch) -> list | None:
        """The taps of one batch by the XLA graph, whose first call per batch shape compiles it; None
        when XLA cannot compile the model (``jit_compile="auto"``: :attr:`jit_compiled` becomes False),
        ``RuntimeError`` with ``True``.  Never traces the plain graph, so it is safe on a helper thread."""
        import tensorflow as tf

        entry = self._entry(True)
        shape = tuple(batch.shape)
        if shape in self._compiled_shapes:
            return entry(batch)
        try:
            outs = entry(batch)
        except (tf.errors.OpError, ValueError, NotImplementedError) as exc:
            if self.jit_compile is True:
                raise RuntimeError(f"XLA could not compile the taps of {self._sub.name!r} (use jit_compile="
                                   f"'auto' or False): {exc}") from exc
            self.jit_compiled = False
            return None
        self._compiled_shapes.add(shape)
        self.jit_compiled = True
        return outs

    def __call__(self, x, plain: bool = False, eager: bool = False) -> dict[str, np.ndarray]:
        """``{tap name: (N, width) float32}`` for ``x`` (an array or a list from :meth:`prepare`), each
        array a writable copy; ``plain=True`` runs the plain graph even when XLA is in use or compiling;
        ``eager=True`` runs the model's layers op by op, tracing nothing: cheaper than a first graph call
        (which traces), dearer than later graph calls.  Values agree with the plain graph to float rounding (TensorFlow's graph optimizer fuses
        some ops; ±1 taps are identical)."""
        return self._extract(x, plain, eager, copy=True)

    def views(self, x, plain: bool = False, eager: bool = False) -> dict[str, np.ndarray]:
        """Like calling the extractor, but a single batch comes back as read-only views of the
        function's output buffers instead of copies (``Tensor.numpy()`` copies every output, time and
        cache traffic proportional to its size).  Two
        views may share memory (a tap forwarded unchanged, e.g. through an identity)."""
        return self._extract(x, plain, eager, copy=False)

    def _extract(self, x, plain: bool, eager: bool, copy: bool) -> dict[str, np.ndarray]:
        batches = x if isinstance(x, list) else self.prepare(x)
        if len(batches) == 1:
            outs = self._run(batches[0], plain, eager)
            self._keep_weights(outs)
            if copy:
                return {name: out.numpy() for name, out in zip(self.names, outs)}
            views = {name: np.asarray(out) for name, out in zip(self.names, outs)}
            for view in views.values():
                view.flags.writeable = False  # TensorFlow already marks them so; never write through one
            return views
        n = sum(int(b.shape[0]) for b in batches)
        result = {name: np.empty((n, self.widths[name]), np.float32) for name in self.names}
        start = 0
        for batch in batches:
            stop = start + int(batch.shape[0])
            outs = self._run(batch, plain, eager)
            for name, out in zip(self.names, outs):
                result[name][start:stop] = out.numpy()
            start = stop
        self._keep_weights(outs)
        return result

    def _keep_weights(self, outs) -> None:
        """With ``weights``: :attr:`weights` is the flat float32 copy of the weights of the last call."""
        if len(outs) > len(self.names):
            self.weights = np.asarray(outs[-1])


def _flat_entry(concrete):
    """``batch -> list of output tensors`` for the concrete function of a one-tensor signature, called
    by its flat entry point: ``concrete.inference_fn.call_flat(batch, *concrete.captured_inputs)``.

    Calling the concrete function itself first binds the argument to its signature and afterwards
    packs the outputs into their structure: Python work that is a sizeable part of a call for a small
    network, more so after an idle spell, when that code has left the caches
    (``benchmarks/bench_callback.py``, rows ``extraction_call_*``).  The flat entry point does
    neither: the signature was fixed at trace time and the outputs are a flat list already.  The
    captured inputs are the variables' resource handles, read once: the graph reads the variables
    through them at each call, so every call sees the current weights.  Where a TensorFlow version
    has no such entry point, or the graph captures values only known at call time, this returns the
    concrete function itself (the same results, by the ordinary call).
    """
    call_flat = getattr(getattr(concrete, "inference_fn", None), "call_flat", None)
    if call_flat is None or getattr(concrete.graph, "deferred_external_captures", True):
        return concrete
    captures = tuple(concrete.captured_inputs)

    def call(batch):
        return call_flat(batch, *captures)

    return call


def make_extractor(model, taps: Sequence[Tap], batch_size: int = 4096, jit_compile="auto",
                   weights=None) -> Extractor:
    """Compile one ``tf.function`` computing every tap of ``taps`` with ``training=False``.

    Returns an :class:`Extractor`: ``extractor(x) -> {name: (N, width) float32}``; ``jit_compile``
    chooses XLA (see :class:`Extractor`).  ``weights`` (e.g. ``model.weights``): the same call also
    copies them, flat float32, into :attr:`Extractor.weights` (for :mod:`ibtoolkit.fingerprint`).
    """
    return Extractor(model, taps, batch_size, jit_compile, weights)
