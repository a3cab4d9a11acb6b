"""Straightforward re-implementations of the anchors' algorithms, timed next to ibtoolkit's.

These follow the published code's approach (not its exact text) and are written for clarity:

* :func:`unique_rows_information` — Shwartz-Ziv & Tishby (2017) information-plane code: map each row
  to a ``np.void`` scalar, ``np.unique`` the rows, plug-in entropies, a Python loop over classes
  for H(T|Y); the inputs are keyed again on every call.  :func:`binning_reference` digitises first
  (30 equal bins on [-1, 1]).
* :func:`kde_reference` — Saxe et al. (2018) KDE: the dense N×N matrix of squared distances
  (``x² + x²ᵀ - 2xxᵀ``), ``logsumexp`` per row, one dense sub-matrix per class, float64 numpy.
* :func:`ksg_reference` — the usual kNN MI code (Kraskov et al. 2004 algorithm 1, as in NPEET):
  three kd-trees (joint, each marginal) for I(X;T) on noisy inputs and again for I(T;Y) with Y as
  a noisy column.

All return (I(X;T), I(T;Y)) in bits.  They exist for timing; the tests check the library against
independent ground truth instead.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma, logsumexp

LN2 = math.log(2.0)


def _void_rows(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()


def _entropy_of_rows(a: np.ndarray) -> float:
    _, counts = np.unique(_void_rows(a), return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def unique_rows_information(x, t, y):
    """Plug-in I(X;T), I(T;Y) of discrete rows via void-view ``np.unique`` and a loop over classes."""
    h_t = _entropy_of_rows(t)
    h_x = _entropy_of_rows(x)
    xt = np.hstack([_void_rows(x).view(np.uint8).reshape(len(x), -1),
                    _void_rows(t).view(np.uint8).reshape(len(t), -1)])
    h_t_given_x = _entropy_of_rows(xt) - h_x
    h_t_given_y = 0.0
    for c in np.unique(y):
        rows = y == c
        h_t_given_y += rows.mean() * _entropy_of_rows(t[rows])
    return h_t - h_t_given_x, h_t - h_t_given_y


def binning_reference(x, t, y, n_bins: int = 30, low: float = -1.0, high: float = 1.0):
    """Shwartz-Ziv & Tishby binning: digitise into equal bins, then :func:`unique_rows_information`."""
    bins = np.linspace(low, high, n_bins + 1)
    digitized = np.digitize(t, bins).astype(np.int64)
    return unique_rows_information(x, digitized, y)


def _kl_entropy_nats(t: np.ndarray, var: float) -> float:
    n, d = t.shape
    x2 = np.sum(t * t, axis=1, keepdims=True)
    dists = x2 + x2.T - 2.0 * t @ t.T
    lprobs = logsumexp(-dists / (2.0 * var), axis=1) - math.log(n) - 0.5 * d * math.log(2 * math.pi * var)
    return d / 2.0 - float(np.mean(lprobs))


def kde_reference(x, t, y, noise_variance: float = 0.1):
    """Saxe et al. KDE upper bounds (dense N×N float64): I(X;T) for distinct inputs, I(T;Y).

    Also evaluates the Bhattacharyya lower bounds (kernel width 4σ²), as the library does.
    """
    t = np.asarray(t, dtype=np.float64)
    d = t.shape[1]
    h_noise = 0.5 * d * math.log(2 * math.pi * math.e * noise_variance)
    out = []
    for var, shift in ((noise_variance, 0.0), (4 * noise_variance, 0.5 * d * math.log(0.25))):
        h = _kl_entropy_nats(t, var) + shift
        h_given_y = sum((y == c).mean() * (_kl_entropy_nats(t[y == c], var) + shift) for c in np.unique(y))
        out.append(((h - h_noise) / LN2, (h - h_given_y) / LN2))
    return out[0]


def _ksg_nats(a: np.ndarray, b: np.ndarray, k: int, rng) -> float:
    a = a + 1e-10 * rng.standard_normal(a.shape)
    b = b + 1e-10 * rng.standard_normal(b.shape)
    joint = np.hstack([a, b])
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=-1)
    radius = np.nextafter(dist[:, k], 0)
    n_a = cKDTree(a).query_ball_point(a, radius, p=np.inf, return_length=True, workers=-1)
    n_b = cKDTree(b).query_ball_point(b, radius, p=np.inf, return_length=True, workers=-1)
    return float(digamma(k) + digamma(len(a)) - np.mean(digamma(n_a) + digamma(n_b)))


def ksg_reference(x, t, y, k: int = 3, random_state: int = 0):
    """Three-tree KSG between X and T, and between T and Y (as a column), in bits."""
    rng = np.random.default_rng(random_state)
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    ycol = np.asarray(y, dtype=np.float64)[:, None]
    return _ksg_nats(x, t, k, rng) / LN2, _ksg_nats(t, ycol, k, rng) / LN2
