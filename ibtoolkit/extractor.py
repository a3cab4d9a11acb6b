"""Extraction: every representation tap of a model computed by one compiled ``tf.function``.

:func:`make_extractor` builds, once, an :class:`Extractor` that computes all taps found by
:func:`ibtoolkit.taps.representation_taps` in inference mode (``training=False``), batched so that
large analysis sets (60 000 x 1024) never need the whole forward pass in memory, compiled with XLA
when XLA can compile the model.  With ``weights=`` the same call also copies the model's weights
(for :mod:`ibtoolkit.fingerprint`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import _keras

_keras.ensure_legacy_keras()

__all__ = ["Extractor", "make_extractor", "check_jit_compile"]


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

    def __init__(self, model, taps: Sequence["Tap"], batch_size: int = 4096, jit_compile="auto", weights=None):
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


def make_extractor(model, taps: Sequence["Tap"], batch_size: int = 4096, jit_compile="auto",
                   weights=None) -> Extractor:
    """Compile one ``tf.function`` computing every tap of ``taps`` with ``training=False``.

    Returns an :class:`Extractor`: ``extractor(x) -> {name: (N, width) float32}``; ``jit_compile``
    chooses XLA (see :class:`Extractor`).  ``weights`` (e.g. ``model.weights``): the same call also
    copies them, flat float32, into :attr:`Extractor.weights` (for :mod:`ibtoolkit.fingerprint`).
    """
    return Extractor(model, taps, batch_size, jit_compile, weights)
