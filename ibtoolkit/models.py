"""Model builders: the multilayer perceptrons of the information-plane studies, in two precisions.

``mlp()`` with its defaults is the 12-10-7-5-4-3-2 network of Shwartz-Ziv & Tishby (2017,
"Opening the black box of deep neural networks via information"): tanh hidden layers, softmax
output, weights drawn from a truncated normal with standard deviation :math:`1/\\sqrt{\\text{fan\\_in}}`.

``precision="binary"`` builds the same shape from Larq ``QuantDense`` layers (Courbariaux et al.
2016; Raj, Nayak & Kalyani 2020, "Understanding Learning Dynamics of Binary Neural Networks via
Information Bottleneck"):

.. math::

    t_\\ell = W^b_\\ell\\, q(t_{\\ell-1}) + b_\\ell, \\qquad q(u) = \\operatorname{sign}(u) \\in \\{-1, +1\\},
    \\quad \\operatorname{sign}(0) = +1,

with binarized kernels :math:`W^b = q_k(W)` of clipped latent weights (``weight_clip``, |W| <= 1).

``precision="quantized"`` keeps full-precision weights and activations but quantizes each hidden
activation to 2^``bits`` levels on the activation's range (:func:`ibtoolkit.quantizers.kbit_quantizer`,
Larq's DoReFa mapped to e.g. [-1, 1] for tanh; Lorenzen, Igel & Nielsen 2022): the hidden layers are
``QuantDense`` layers with ``activation`` and no kernel quantizer, and every layer after the first
(the output included) reads its input through the k-bit quantizer, so each hidden representation is
a k-level code that ``exact`` can measure.
The hidden non-linearity of a BNN is the *next* layer's ``input_quantizer``; the hidden
``QuantDense`` layers therefore have no activation of their own (``activation`` applies to
``precision="full"`` only).  ``first_layer`` / ``last_layer`` choose the precision of the first
and output layers' weights: a full-precision first layer takes the inputs as given, a
full-precision output layer still consumes the binarized codes of the last hidden layer (so
every hidden representation stays ±1).  A binary first layer has no input quantizer either:
feed it ±1 data (see :func:`to_pm1`), since a sign quantizer maps {0, 1} inputs all to +1.

Layer names: ``hidden_1`` ... ``hidden_L`` (the Dense/QuantDense layers, i.e. the representation
taps), ``bn_i`` and ``act_i`` for the optional BatchNormalization/activation layers, ``output``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from . import _keras  # noqa: F401  (Keras-2 mode before TensorFlow loads)
from .codes import to_pm1  # noqa: F401  (re-exported: models take ±1 inputs)

__all__ = ["mlp", "stack", "to_pm1", "resolve_quantizer", "is_sign_quantizer", "SIGN_QUANTIZERS",
           "KERNEL_ONLY_QUANTIZERS"]

_keras.ensure_legacy_keras()

#: Larq quantizer names whose forward map is sign(x) in {-1, +1} with sign(0) = +1.
SIGN_QUANTIZERS = ("ste_sign", "approx_sign", "swish_sign")
#: Quantizers allowed on kernels only (their output is not ±1).
KERNEL_ONLY_QUANTIZERS = ("magnitude_aware_sign",)


def _larq():
    import larq as lq

    return lq


def is_sign_quantizer(quantizer) -> bool:
    """True when ``quantizer`` (name, Larq object or function) outputs only ±1 (sign, sign(0)=+1)."""
    if quantizer is None:
        return False
    if isinstance(quantizer, str):
        return quantizer in SIGN_QUANTIZERS
    q = _larq().quantizers
    if isinstance(quantizer, (q.SteSign, q.ApproxSign, q.SwishSign)):
        return True
    return any(quantizer is getattr(q, name) for name in SIGN_QUANTIZERS)


def resolve_quantizer(spec, *, role: str):
    """Return a Larq quantizer for ``spec`` (a Larq name, a quantizer object or callable, or None).

    ``role`` is ``"input"`` or ``"kernel"``.  Input quantizers must produce ±1 codes, so
    ``magnitude_aware_sign`` (a scaled sign) is refused there.
    """
    if role not in ("input", "kernel"):
        raise ValueError(f"role must be 'input' or 'kernel', got {role!r}")
    if spec is None:
        return None
    lq = _larq()
    if isinstance(spec, str):
        if role == "input" and spec in KERNEL_ONLY_QUANTIZERS:
            raise ValueError(f"{spec!r} is a kernel quantizer (its output is scaled, not ±1); "
                             f"use one of {SIGN_QUANTIZERS} as input_quantizer")
        try:
            return lq.quantizers.get(spec)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"unknown Larq quantizer {spec!r} for {role}_quantizer "
                             f"(try one of {SIGN_QUANTIZERS + KERNEL_ONLY_QUANTIZERS}): {exc}") from exc
    if role == "input" and isinstance(spec, lq.quantizers.MagnitudeAwareSign):
        raise ValueError("MagnitudeAwareSign is a kernel quantizer (its output is scaled, not ±1); "
                         f"use one of {SIGN_QUANTIZERS} as input_quantizer")
    if not callable(spec):
        raise ValueError(f"{role}_quantizer must be a Larq quantizer name, object or callable, got {spec!r}")
    return spec


def _check_widths(widths, n_classes, input_dim):
    try:
        widths = tuple(int(w) for w in widths)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"widths must be a sequence of positive integers, got {widths!r}") from exc
    if not widths or any(w <= 0 for w in widths):
        raise ValueError(f"widths must be a non-empty sequence of positive integers, got {widths!r}")
    for label, value in (("n_classes", n_classes), ("input_dim", input_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2 for a softmax classifier, got {n_classes}")
    return widths


def _initializer(kernel_initializer, fan_in: int, precision: str, seed):
    import tensorflow as tf

    if kernel_initializer is not None:
        init = tf.keras.initializers.get(kernel_initializer)
        if seed is not None and hasattr(init, "seed") and getattr(init, "seed", None) is None:
            config = init.get_config()
            config["seed"] = seed
            init = type(init).from_config(config)
        return init
    if precision == "full":  # Shwartz-Ziv & Tishby: truncated normal, std 1/sqrt(fan_in)
        return tf.keras.initializers.TruncatedNormal(mean=0.0, stddev=1.0 / math.sqrt(fan_in), seed=seed)
    return tf.keras.initializers.GlorotUniform(seed=seed)  # Larq's default for latent weights


def mlp(widths: Sequence[int] = (10, 7, 5, 4, 3), n_classes: int = 2, input_dim: int = 12,
        precision: str = "full", activation="tanh", input_quantizer="ste_sign",
        kernel_quantizer="ste_sign", batch_norm: bool = False, first_layer: str = "binary",
        last_layer: str = "full", kernel_initializer=None, name: str | None = None, seed: int | None = None,
        bits: int = 8, value_range=None):
    """Build an MLP ``input_dim - widths... - n_classes`` as a tf.keras (Keras 2) functional model.

    Parameters
    ----------
    widths : sequence of int
        Hidden layer widths; the default gives 12-10-7-5-4-3-2 (Shwartz-Ziv & Tishby 2017).
    n_classes, input_dim : int
        Output (softmax) and input sizes.
    precision : {"full", "binary", "quantized"}
        ``"full"``: ``Dense`` layers with ``activation``.  ``"binary"``: Larq ``QuantDense`` layers with
        ``input_quantizer``/``kernel_quantizer`` and ``kernel_constraint="weight_clip"``.
        ``"quantized"``: full-precision weights, hidden activations quantized to ``2**bits`` levels
        (see the module docstring).
    activation : str or callable
        Hidden activation of full-precision models (``tanh``, ``relu``, any Keras activation).
        Unused for binary models, whose hidden non-linearity is the next layer's input quantizer.
    input_quantizer, kernel_quantizer : str, Larq quantizer or callable
        Names such as ``ste_sign``, ``approx_sign``, ``swish_sign`` (same forward map, different
        gradients) and, for kernels only, ``magnitude_aware_sign``.
    batch_norm : bool
        Insert ``BatchNormalization`` after every hidden (Quant)Dense layer (before the activation
        of full-precision models).
    first_layer, last_layer : {"binary", "full"}
        Precision of the first layer's and the output layer's weights in binary models.
    kernel_initializer : initializer or None
        Default: truncated normal with std ``1/sqrt(fan_in)`` (full), Glorot uniform (binary latent weights).
    name : str or None
        Model name; default ``"mlp_<precision>_<widths joined by '-'>"``.
    seed : int or None
        Seed of the initializers (layer ``i`` uses ``seed + i``), for reproducible models.
    bits : int
        Bits of the activation quantizer of ``precision="quantized"`` (2^bits levels); default 8.
    value_range : (low, high) or None
        Range the quantized levels span; None takes the bounded activation's range (tanh: [-1, 1]).
    """
    widths = _check_widths(widths, n_classes, input_dim)
    if precision not in ("full", "binary", "quantized"):
        raise ValueError(f"precision must be 'full', 'binary' or 'quantized', got {precision!r}")
    for label, value in (("first_layer", first_layer), ("last_layer", last_layer)):
        if value not in ("full", "binary"):
            raise ValueError(f"{label} must be 'full' or 'binary', got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    import tensorflow as tf

    if precision != "binary":
        activation_fn = tf.keras.activations.get(activation)  # ValueError for unknown names
        del activation_fn
    if precision == "quantized":
        from .quantizers import kbit_quantizer

        iq = kbit_quantizer(bits, activation if isinstance(activation, str) else None, value_range)
    elif precision == "binary":
        iq = resolve_quantizer(input_quantizer, role="input")
        kq = resolve_quantizer(kernel_quantizer, role="kernel")
        if iq is None:
            raise ValueError("a binary model needs an input_quantizer (e.g. 'ste_sign')")
    if name is None:
        name = f"mlp_{precision}_{input_dim}-" + "-".join(map(str, widths)) + f"-{n_classes}"

    def seed_of(i):
        return None if seed is None else int(seed) + i

    inputs = tf.keras.Input(shape=(input_dim,), name="input")
    h = inputs
    fan_in = input_dim
    for i, width in enumerate(widths, start=1):
        init = _initializer(kernel_initializer, fan_in, "full" if precision == "quantized" else precision,
                            seed_of(i))
        if precision == "quantized":
            h = _larq().layers.QuantDense(width, activation=None if batch_norm else activation,
                                          input_quantizer=None if i == 1 else _fresh(iq),
                                          kernel_initializer=init, name=f"hidden_{i}")(h)
            if batch_norm:
                h = tf.keras.layers.BatchNormalization(name=f"bn_{i}")(h)
                h = tf.keras.layers.Activation(activation, name=f"act_{i}")(h)
        elif precision == "full":
            h = tf.keras.layers.Dense(width, activation=None if batch_norm else activation,
                                      kernel_initializer=init, name=f"hidden_{i}")(h)
            if batch_norm:
                h = tf.keras.layers.BatchNormalization(name=f"bn_{i}")(h)
                h = tf.keras.layers.Activation(activation, name=f"act_{i}")(h)
        else:
            lq = _larq()
            binary_weights = i > 1 or first_layer == "binary"
            h = lq.layers.QuantDense(
                width,
                input_quantizer=None if i == 1 else _fresh(iq),
                kernel_quantizer=_fresh(kq) if binary_weights else None,
                kernel_constraint="weight_clip" if binary_weights else None,
                kernel_initializer=init, name=f"hidden_{i}")(h)
            if batch_norm:
                h = tf.keras.layers.BatchNormalization(name=f"bn_{i}")(h)
        fan_in = width
    init = _initializer(kernel_initializer, fan_in, "full" if precision == "quantized" else precision,
                        seed_of(len(widths) + 1))
    if precision == "quantized":
        outputs = _larq().layers.QuantDense(n_classes, activation="softmax", input_quantizer=_fresh(iq),
                                            kernel_initializer=init, name="output")(h)
    elif precision == "full":
        outputs = tf.keras.layers.Dense(n_classes, activation="softmax", kernel_initializer=init, name="output")(h)
    else:
        lq = _larq()
        binary_weights = last_layer == "binary"
        outputs = lq.layers.QuantDense(
            n_classes, activation="softmax", input_quantizer=_fresh(iq),
            kernel_quantizer=_fresh(kq) if binary_weights else None,
            kernel_constraint="weight_clip" if binary_weights else None,
            kernel_initializer=init, name="output")(h)
    return tf.keras.Model(inputs, outputs, name=name)


def stack(models, names=None, **kwargs):
    """Train S built models as one tf-keras model, each member with its own weights, optimizer state,
    loss term, metrics and batch order; see :func:`ibtoolkit.stacking.stack` and ``docs/stacking.md``."""
    from .stacking import stack as _stack

    return _stack(models, names, **kwargs)


def _fresh(quantizer):
    """A separate quantizer instance per layer (Larq quantizers are layers; sharing one is fragile)."""
    if quantizer is None:
        return None
    lq = _larq()
    if isinstance(quantizer, lq.quantizers.Quantizer):
        return type(quantizer).from_config(quantizer.get_config())
    return quantizer
