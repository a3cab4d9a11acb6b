"""k-bit quantizers mapped to an activation's range, for quantized (not binary) networks.

Lorenzen, Igel & Nielsen (2022, "Information Bottleneck: Exact Analysis of (Quantized) Neural
Networks") measure full-precision-like networks with exact entropies by quantizing each layer's
activation to 2^k levels spread evenly over the activation's range.  :class:`KBitQuantizer` does that
with Larq's DoReFa k-bit activation quantizer (Zhou et al. 2016), which quantizes [0, 1]:

.. math::

    q_{[0,1]}(u) = \\frac{\\operatorname{round}(n\\,\\operatorname{clip}(u, 0, 1))}{n}, \\qquad n = 2^k - 1,

mapped affinely to the range [a, b] (``value_range``; tanh: [-1, 1]):

.. math::

    q(t) = a + (b - a)\\, q_{[0,1]}\\!\\left(\\frac{t - a}{b - a}\\right) \\in
    \\left\\{a + \\tfrac{i}{n}(b - a) : i = 0, \\dots, n\\right\\},

so the code takes exactly 2^k values including both ends.  The gradient is DoReFa's straight-through
estimator (identity on [a, b], zero outside), rescaled by the same affine map, i.e. identity on [a, b].

Used as the ``input_quantizer`` of the next Larq layer, its output is what that layer consumes, so the
representation taps (``ibtoolkit.taps``) record the k-level codes.  The quantizer declares itself
discrete the way Larq's DoReFa does: it *is* a ``DoReFa`` in ``mode="activations"`` with ``precision``
= k bits, so a tap whose consumer applies it is declared discrete with 2^k levels; ``levels`` (2^k) and
``values()`` (the level set) say the same directly.
"""
from __future__ import annotations

import numpy as np

from . import _keras  # noqa: F401  (Keras-2 mode before TensorFlow loads)

_keras.ensure_legacy_keras()

__all__ = ["KBitQuantizer", "kbit_quantizer", "ACTIVATION_RANGES"]

#: Ranges of the bounded activations a k-bit quantizer can be mapped to without a stated range.
ACTIVATION_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0),
                     "hard_tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}


def _check(k_bit, value_range) -> tuple[int, tuple[float, float]]:
    if isinstance(k_bit, bool) or not isinstance(k_bit, (int, np.integer)) or not 1 <= k_bit <= 16:
        raise ValueError(f"k_bit must be an integer between 1 and 16, got {k_bit!r}")
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be a pair (low, high) of numbers, got {value_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with low < high, got {value_range!r}")
    return int(k_bit), (lo, hi)


def _make_class():
    import larq as lq
    import tensorflow as tf

    @tf.keras.utils.register_keras_serializable(package="ibtoolkit")
    class KBitQuantizer(lq.quantizers.DoReFa):
        """DoReFa k-bit activation quantizer mapped from [0, 1] to ``value_range`` (see module docstring)."""

        def __init__(self, k_bit: int = 8, value_range=(-1.0, 1.0), **kwargs):
            kwargs.pop("mode", None)
            k_bit, (lo, hi) = _check(k_bit, value_range)
            super().__init__(k_bit=k_bit, mode="activations", **kwargs)
            self.value_range = (lo, hi)

        @property
        def levels(self) -> int:
            """Number of distinct output values, 2^k."""
            return 2 ** int(self.precision)

        def values(self) -> np.ndarray:
            """The 2^k output values, ascending (float32, as the layer computes them)."""
            lo, hi = self.value_range
            n = self.levels - 1
            return (np.float32(lo) + np.float32(hi - lo) * (np.arange(n + 1, dtype=np.float32) / np.float32(n)))

        def call(self, inputs):
            lo, hi = self.value_range
            unit = (inputs - lo) / (hi - lo)
            return lo + (hi - lo) * super().call(unit)

        def get_config(self):
            config = super().get_config()
            config.pop("mode", None)
            return {**config, "value_range": list(self.value_range)}

    return KBitQuantizer


_CLASS = None


def __getattr__(name):  # the class is built on first use, so importing ibtoolkit stays light
    if name == "KBitQuantizer":
        global _CLASS
        if _CLASS is None:
            _CLASS = _make_class()
        return _CLASS
    raise AttributeError(name)


def kbit_quantizer(k_bit: int = 8, activation: str | None = "tanh", value_range=None):
    """A :class:`KBitQuantizer` with 2^``k_bit`` levels on ``value_range``.

    ``value_range`` None takes the range of the bounded ``activation`` (:data:`ACTIVATION_RANGES`);
    an unbounded activation (ReLU, ...) needs an explicit range, else ``ValueError``.
    """
    if value_range is None:
        if activation not in ACTIVATION_RANGES:
            raise ValueError(f"activation {activation!r} has no bounded range; give value_range=(low, high) "
                             f"(bounded: {sorted(ACTIVATION_RANGES)})")
        value_range = ACTIVATION_RANGES[activation]
    k_bit, value_range = _check(k_bit, value_range)
    return __getattr__("KBitQuantizer")(k_bit=k_bit, value_range=value_range)
