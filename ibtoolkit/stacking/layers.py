"""Member-axis layers: one Keras layer computes the same layer of S members at once.

Activations carry the member axis second, ``(B, S, ...)``: row b of member s is ``x[b, s]``.  Every
weight of a member-axis layer is the members' weights stacked on a first axis, ``(S, ...)``, so
member s's weights are ``w[s]`` and no arithmetic ever mixes two members:

* :class:`MemberDense` (``Dense`` and Larq ``QuantDense``):
  :math:`y_{bso} = \\phi\\big(\\sum_i q_a(x)_{bsi}\\, q_k(W)_{sio} + b_{so}\\big)`, one
  ``einsum("bsi,sio->bso")``, with the input quantizer :math:`q_a` and kernel quantizer
  :math:`q_k` applied per member (:func:`~ibtoolkit.stacking.member_ops.member_map`);
* :class:`MemberConv2D` (``Conv2D`` and ``QuantConv2D``): the kernels stacked ``(S, kh, kw, C, F)``
  and quantized at once, then one ordinary convolution per member inside the layer, each member's
  input with its own kernel only (a grouped convolution with S groups computes the same, but
  TensorFlow's CPU kernels have no gradient for it where oneDNN is off, and XLA compiles it into much
  slower code: ``benchmarks/bench_member_conv.py``);
* :class:`MemberBatchNorm`: batch statistics per member and channel, over the batch (and spatial)
  axes, never across members; moving averages as Keras updates them;
* :class:`MemberFold`: a weightless per-sample layer (pooling, padding...) applied to the members
  folded into the batch axis, ``(B*S, ...)``;
* :class:`MemberElementwise`, :class:`MemberReshape`: activations, dropout, ``Flatten`` and
  ``Reshape`` on ``(B, S, ...)`` directly.

Gradients of a summed loss reach member s's slice of a weight only through member s's outputs, so
each member's gradient is exactly the one it gets alone.
"""
from __future__ import annotations

import numpy as np

from .. import _keras

_keras.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

from .member_ops import member_map  # noqa: E402

__all__ = ["MemberDense", "MemberConv2D", "MemberBatchNorm", "MemberFold", "MemberElementwise", "MemberReshape"]


def _fresh(quantizer):
    """A separate instance of a Larq quantizer (they are layers; never share one between layers)."""
    if quantizer is None:
        return None
    import larq as lq

    if isinstance(quantizer, lq.quantizers.Quantizer):
        return type(quantizer).from_config(quantizer.get_config())
    return quantizer


class _MemberConstraint:
    """A Keras constraint applied per member of a stacked weight (axis 0)."""

    def __init__(self, constraint):
        self.constraint = constraint

    def __call__(self, w):
        return member_map(self.constraint, w, axis=0)


class _MemberRegularizer:
    """The sum over members of a regulariser: the sum of the members' own penalties."""

    def __init__(self, regularizer):
        self.regularizer = regularizer

    def __call__(self, w):
        return tf.add_n([self.regularizer(part) for part in tf.unstack(w, axis=0)])


class _MemberLayer(tf.keras.layers.Layer):
    """Base: weights created from the members' stacked initial values, in the members' weight order."""

    def __init__(self, template, initial=(), **kwargs):
        super().__init__(name=template.name, dtype=template.dtype, trainable=template.trainable, **kwargs)
        self._initial = [np.asarray(w) for w in initial]
        self.n_members = None

    def _member_weight(self, index: int, name: str, trainable: bool = True, constraint=None, regularizer=None):
        value = self._initial[index]
        self.n_members = int(value.shape[0])
        return self.add_weight(name=name, shape=value.shape, dtype=self.dtype, trainable=trainable,
                               initializer=tf.keras.initializers.Constant(value),
                               constraint=None if constraint is None else _MemberConstraint(constraint),
                               regularizer=None if regularizer is None else _MemberRegularizer(regularizer))

    def member_weights(self, member: int) -> list[np.ndarray]:
        """Member ``member``'s weights, in the order of the layer it was built from."""
        return [w[member] for w in self.get_weights()]

    def set_member_weights(self, member: int, weights) -> None:
        stacked = self.get_weights()
        for w, value in zip(stacked, weights):
            w[member] = value
        self.set_weights(stacked)


class _KernelLayer(_MemberLayer):
    """Base of member-axis Dense and Conv2D: kernel (S, ...), optional bias (S, units), Larq quantizers."""

    def __init__(self, template, initial):
        super().__init__(template, initial)
        self.activation = template.activation
        self.use_bias = bool(template.use_bias)
        self.input_quantizer = _fresh(getattr(template, "input_quantizer", None))
        self.kernel_quantizer = _fresh(getattr(template, "kernel_quantizer", None))
        self._constraints = (template.kernel_constraint, template.bias_constraint)
        self._regularizers = (template.kernel_regularizer, template.bias_regularizer)

    def build(self, input_shape):
        self.kernel = self._member_weight(0, "kernel", constraint=self._constraints[0],
                                          regularizer=self._regularizers[0])
        self.bias = (self._member_weight(1, "bias", constraint=self._constraints[1],
                                         regularizer=self._regularizers[1]) if self.use_bias else None)
        self.built = True


class MemberDense(_KernelLayer):
    """``Dense``/``QuantDense`` of S members: kernel (S, in, out), bias (S, out), inputs (B, S, in)."""

    def __init__(self, template, initial):
        super().__init__(template, initial)
        self.units = int(template.units)

    def call(self, inputs):
        x = member_map(self.input_quantizer, inputs, axis=1)
        kernel = member_map(self.kernel_quantizer, self.kernel, axis=0)
        y = tf.einsum("bsi,sio->bso", x, kernel)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y


class MemberConv2D(_KernelLayer):
    """``Conv2D``/``QuantConv2D`` (channels last) of S members: one convolution per member.

    :math:`y_{bs} = \\phi\\big(q_a(x)_{bs} \\star q_k(W)_s + b_s\\big)` for every member s, with the
    quantizers applied to all members at once; member s's convolution is the very op it runs alone.
    """

    def __init__(self, template, initial):
        super().__init__(template, initial)
        self.filters = int(template.filters)
        self.strides = tuple(template.strides)
        self.dilations = tuple(template.dilation_rate)
        self.padding = template.padding.upper()
        pad_values = getattr(template, "pad_values", 0.0)
        # Larq pads "same" convolutions with pad_values (e.g. -1 for ±1 inputs) explicitly, then runs "valid"
        self._explicit_pad = self.padding == "SAME" and pad_values != 0.0
        self._pad_values = float(pad_values)
        self._kernel_size = tuple(template.kernel_size)

    def call(self, inputs):
        _, _, h, w, _ = inputs.shape
        x = member_map(self.input_quantizer, inputs, axis=1)                       # (B, S, H, W, C)
        kernel = member_map(self.kernel_quantizer, self.kernel, axis=0)            # (S, kh, kw, C, F)
        padding = self.padding
        if self._explicit_pad:
            from larq.layers_base import _compute_padding

            pads = [list(_compute_padding(*args)) for args in
                    zip(self.strides, self.dilations, (h, w), self._kernel_size)]
            x = tf.pad(x, [[0, 0], [0, 0], *pads, [0, 0]], constant_values=self._pad_values)
            padding = "VALID"
        y = tf.stack([tf.nn.conv2d(xs, ks, strides=self.strides, padding=padding, dilations=self.dilations)
                      for xs, ks in zip(tf.unstack(x, axis=1), tf.unstack(kernel))], axis=1)
        if self.bias is not None:
            y = y + self.bias[:, None, None, :]                                     # (S, 1, 1, F)
        return self.activation(y) if self.activation is not None else y          # (B, S, H', W', F)


class MemberBatchNorm(_MemberLayer):
    """``BatchNormalization`` (last axis) of S members: gamma, beta and moving statistics (S, C).

    Training: :math:`y = \\gamma_s (x - \\mu_s) / \\sqrt{\\sigma_s^2 + \\epsilon} + \\beta_s` with the
    batch mean and (biased) variance of member s over the batch and spatial axes; moving averages
    :math:`m \\leftarrow m - (1 - \\text{momentum})(m - \\mu_s)`, the variance's with Bessel's
    factor n/(n-1) where Keras uses its fused kernel (4-D inputs), as that kernel does.  Inference
    (and ``trainable=False``): the moving statistics.
    """

    def __init__(self, template, initial):
        super().__init__(template, initial)
        self.epsilon = float(template.epsilon)
        self.momentum = float(template.momentum)
        self.center, self.scale = bool(template.center), bool(template.scale)
        self._unbiased_moving_variance = bool(getattr(template, "fused", False))
        self._constraints = (template.gamma_constraint, template.beta_constraint)
        self._regularizers = (template.gamma_regularizer, template.beta_regularizer)

    def build(self, input_shape):
        i = 0
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self._member_weight(i, "gamma", constraint=self._constraints[0],
                                             regularizer=self._regularizers[0])
            i += 1
        if self.center:
            self.beta = self._member_weight(i, "beta", constraint=self._constraints[1],
                                            regularizer=self._regularizers[1])
            i += 1
        self.moving_mean = self._member_weight(i, "moving_mean", trainable=False)
        self.moving_variance = self._member_weight(i + 1, "moving_variance", trainable=False)
        self.built = True

    def call(self, inputs, training=None):
        rank = inputs.shape.rank
        shape = [1, self.n_members] + [1] * (rank - 3) + [inputs.shape[-1]]

        def bcast(v):
            return None if v is None else tf.reshape(v, shape)

        if training is None:
            training = tf.keras.backend.learning_phase()
        training = bool(tf.get_static_value(training)) if tf.is_tensor(training) else bool(training)
        if not (training and self.trainable):
            mean, variance = self.moving_mean, self.moving_variance
        else:
            axes = [0] + list(range(2, rank - 1))
            mean, variance = tf.nn.moments(inputs, axes)
            moving_var = variance
            if self._unbiased_moving_variance:
                n = tf.cast(tf.reduce_prod(tf.gather(tf.shape(inputs), axes)), inputs.dtype)
                moving_var = variance * n / tf.maximum(n - 1.0, 1.0)
            decay = 1.0 - self.momentum
            self.moving_mean.assign_sub((self.moving_mean - mean) * decay)
            self.moving_variance.assign_sub((self.moving_variance - moving_var) * decay)
        return tf.nn.batch_normalization(inputs, bcast(mean), bcast(variance), bcast(self.beta),
                                         bcast(self.gamma), self.epsilon)


class MemberFold(tf.keras.layers.Layer):
    """A weightless per-sample layer (pooling, padding, cropping...) on (B, S, ...) via (B*S, ...)."""

    def __init__(self, template):
        super().__init__(name=template.name, dtype=template.dtype)
        self.inner = type(template).from_config(template.get_config())

    def call(self, inputs, training=None):
        s = inputs.shape[1]
        y = self.inner(tf.reshape(inputs, (-1, *inputs.shape[2:])), training=training)
        return tf.reshape(y, (-1, s, *y.shape[1:]))


class MemberElementwise(tf.keras.layers.Layer):
    """A weightless elementwise layer (activation, dropout, noise) applied to (B, S, ...) as it stands."""

    def __init__(self, template):
        super().__init__(name=template.name, dtype=template.dtype)
        self.inner = type(template).from_config(template.get_config())

    def call(self, inputs, training=None):
        return self.inner(inputs, training=training)


class MemberReshape(tf.keras.layers.Layer):
    """``Flatten`` (channels last) or ``Reshape(target)`` per member: (B, S, ...) -> (B, S, target)."""

    def __init__(self, template, target):
        super().__init__(name=template.name, dtype=template.dtype)
        self.target = tuple(int(t) for t in target)

    def call(self, inputs):
        return tf.reshape(inputs, (-1, inputs.shape[1], *self.target))
