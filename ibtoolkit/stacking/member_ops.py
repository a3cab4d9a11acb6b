"""Per-member maps on tensors with a member axis.

A stacked tensor holds S members side by side: activations are ``(B, S, ...)`` (member axis 1),
stacked weights ``(S, ...)`` (member axis 0).  A function ``f`` acts *per member* when member s of
the result depends only on member s of the input: ``member_map(f, x, axis)[s] = f(x[s])``.

Elementwise functions (Larq's sign quantizers ``ste_sign``, ``approx_sign``, ``swish_sign``,
``ste_heaviside``, ``weight_clip``, ``tanh``...) are per-member as they stand and run on the whole
stacked tensor at once.  Any other function (``magnitude_aware_sign`` averages |W| over a kernel's
input axes; a ``MaxNorm`` constraint takes a norm over an axis) is applied member by member:
``tf.stack([f(x_s) for s])``, exact but with S times the ops.
"""
from __future__ import annotations

__all__ = ["is_elementwise", "member_map"]


def is_elementwise(fn) -> bool:
    """True when ``fn`` (a Larq quantizer, Keras constraint or callable) acts on each element alone."""
    if fn is None:
        return True
    import larq as lq
    import tensorflow as tf

    q = lq.quantizers
    elementwise = (q.SteSign, q.ApproxSign, q.SwishSign, q.SteHeaviside, q.NoOp)
    if isinstance(fn, elementwise):
        return True
    if isinstance(fn, q.SteTern):
        return not fn.ternary_weight_networks  # the TWN threshold is a mean over the tensor
    if isinstance(fn, q.DoReFa):
        return fn.mode == "activations"        # "weights" mode normalises by a max over the tensor
    if isinstance(fn, (lq.constraints.WeightClip, tf.keras.constraints.NonNeg)):
        return True
    return any(fn is getattr(q, name, None) for name in ("ste_sign", "approx_sign", "swish_sign",
                                                         "ste_heaviside"))


def member_map(fn, x, axis: int):
    """``fn`` applied to each member of ``x`` along ``axis`` (one call if ``fn`` is elementwise)."""
    if fn is None:
        return x
    if is_elementwise(fn):
        return fn(x)
    import tensorflow as tf

    return tf.stack([fn(part) for part in tf.unstack(x, axis=axis)], axis=axis)
