"""A third-party estimator plugin, as a user would write it, for the ``--plugin`` test of the CLI.

``naive_plugin`` is the plug-in (maximum-likelihood) estimator written naively with ``np.unique``:
for a deterministic network I(X;T) = H(T) and I(T;Y) = H(T) - H(T|Y), with T's distinct rows as
symbols.  On ±1 codes this is exactly what the built-in ``exact`` estimator computes, so the test
can compare the two on the same stores.
"""
import numpy as np

from ibtoolkit import register_estimator


def _entropy_bits(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


@register_estimator("naive_plugin")
def naive_plugin(x, t, y):
    _, codes = np.unique(np.asarray(t), axis=0, return_inverse=True)
    codes = codes.ravel()
    h_t = _entropy_bits(np.bincount(codes))
    h_t_given_y = sum((y == c).mean() * _entropy_bits(np.bincount(codes[y == c])) for c in np.unique(y))
    return h_t, h_t - h_t_given_y


@register_estimator("always_fails")
def always_fails(x, t, y):
    """An estimator that fails on every call: the CLI must finish the rest and exit non-zero."""
    raise ValueError("always_fails was asked for an estimate")


@register_estimator("fails_on_width_3")
def fails_on_width_3(x, t, y):
    """Fails on 3-unit layers only (the second hidden layer of the ``tiny`` preset), else equals
    ``naive_plugin``: a failure is per (layer, epoch) and the rest of the plane is still computed."""
    if t.shape[1] == 3:
        raise ArithmeticError(f"fails_on_width_3 cannot handle a layer of width {t.shape[1]}")
    return naive_plugin(x, t, y)
