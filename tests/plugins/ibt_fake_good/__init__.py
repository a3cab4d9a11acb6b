"""A working fake plugin: one Estimator subclass and one plain function, neither decorated.

Declared by the test through entry points only, as a third-party package would.
"""
import numpy as np

from ibtoolkit import EstimateResult, Estimator


class ConstantEstimator(Estimator):
    """Returns I(X;T) = level and I(T;Y) = level / 2, whatever the data."""

    def __init__(self, level: float = 1.0):
        self.level = level

    def _estimate(self, x, t, y):
        return EstimateResult(self.level, self.level / 2, {"n_samples": int(np.shape(t)[0])})


def width_estimator(x, t, y, scale=1.0):
    """I(X;T) = scale * width of t, I(T;Y) = 0."""
    return scale * t.shape[1], 0.0
