r"""``kde``: Kolchinsky–Tracey pairwise-distance bounds on a noisy representation (Saxe et al., 2018).

A layer's representation ``T`` (N rows :math:`t_i`) is made continuous by additive Gaussian noise,
:math:`\tilde T = T + \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, \sigma^2 I_d)`.  With ``X``
uniform over the N analysis samples, :math:`\tilde T` is the mixture
:math:`p(\tilde t) = \frac1N \sum_j \mathcal N(\tilde t; t_j, \sigma^2 I)`, whose entropy has no
closed form.  Kolchinsky & Tracey (2017, "Estimating mixture entropy with pairwise distances",
Entropy 19:361) bound it with pairwise distances between the components.  With
:math:`D_{ij} = \lVert t_i - t_j \rVert^2` and :math:`h_\sigma = \tfrac d2 \ln(2\pi e \sigma^2)`
(the entropy of one component):

.. math::

    \hat H_{\mathrm{KL}} &= h_\sigma - \frac1N \sum_i \ln \frac1N \sum_j
        \exp\!\Big(-\frac{D_{ij}}{2\sigma^2}\Big) \;\ge\; H(\tilde T)
        \quad\text{(KL divergence between components: the upper bound)}

    \hat H_{\mathrm{BD}} &= h_\sigma - \frac1N \sum_i \ln \frac1N \sum_j
        \exp\!\Big(-\frac{D_{ij}}{8\sigma^2}\Big) \;\le\; H(\tilde T)
        \quad\text{(Bhattacharyya distance: the lower bound, i.e. kernel width } 4\sigma^2)

(the same expressions as Saxe et al.'s ``entropy_estimator_kl`` and ``entropy_estimator_bd``).

Information-plane coordinates, in bits (every estimate in nats divided by ln 2):

* :math:`I(X;T) = H(\tilde T) - H(\tilde T \mid X)`.  Conditioning on X is conditioning on the
  *distinct* input: for a distinct input :math:`u` with rows :math:`R_u` (:math:`n_u = |R_u|`),
  :math:`\tilde T \mid X{=}u` is the mixture over the rows of :math:`R_u`, and its entropy is
  estimated with the same pairwise expression restricted to :math:`R_u`.  When every input is
  distinct, or ``t`` is the same on every row of a group (any deterministic network), each
  conditional mixture is a single Gaussian and :math:`H(\tilde T \mid X) = h_\sigma` exactly, so
  the KL and BD values are true upper and lower bounds on :math:`I(X;T)`; they never exceed
  :math:`\log_2` (number of distinct inputs).
* :math:`I(T;Y) = H(\tilde T) - \sum_c p(c)\, H(\tilde T \mid Y{=}c)`, each class-conditional
  mixture estimated by the same expression over the rows of class c (Saxe et al.'s convention:
  upper minus upper, lower minus lower; these two are estimates, not guaranteed bounds).

Everything is computed per row, so the :math:`h_\sigma` constants cancel exactly:

.. math::

    \hat I(X;T) = \frac1N \sum_i \Big[\ln \tfrac{1}{n_{u(i)}} \sum_{j \in R_{u(i)}} K_{ij}
                  - \ln \tfrac1N \sum_j K_{ij}\Big], \qquad
    \hat I(T;Y) = \frac1N \sum_i \Big[\ln \tfrac{1}{N_{y_i}} \sum_{j: y_j = y_i} K_{ij}
                  - \ln \tfrac1N \sum_j K_{ij}\Big].

Implementation (TensorFlow; runs on a GPU when one is visible): ``t`` is centred (distances are
translation invariant; this keeps float32 cancellation small), all squared distances of a block of
``chunk_size`` rows come from one matrix product of augmented rows
:math:`[t_i, \lVert t_i\rVert^2, 1]\cdot[-2t_j, 1, \lVert t_j\rVert^2]^\top`, clamped at 0;
:math:`K^{BD} = \exp(-D/8\sigma^2)` and :math:`K^{KL} = (K^{BD})^4`; the per-class sums of both
kernels are one product with the one-hot label matrix, and the full row sum is the sum over
classes.  Memory is O(``chunk_size`` × N).  Every sum contains its diagonal term
:math:`K_{ii} = 1`, so it lies in [1, N] and its logarithm is safe in float32 without a
log-sum-exp max pass.  The compiled function is traced once per instance (relaxed shapes), and
the grouping of ``x`` into distinct inputs is computed once and reused while ``x`` is unchanged.
"""
from __future__ import annotations

import math

import numpy as np

from ibtoolkit import Estimator, EstimateResult, register_estimator
from ibtoolkit.estimator import LN2

__all__ = ["KDEEstimator", "InputGroups", "kde_bounds"]

_DTYPES = ("float32", "float64")


class InputGroups:
    """Distinct rows of the analysis inputs ``x``, computed once and reused while ``x`` is unchanged.

    ``inverse[i]`` is the index of the distinct input of row i, ``counts[u]`` its multiplicity.
    Rows are compared bytewise after ``+ 0.0`` (so -0.0 equals 0.0); NaN never reaches here
    (validation refuses it).
    """

    def __init__(self):
        self._x = None
        self.first = None
        self.inverse = None
        self.counts = None

    def update(self, x: np.ndarray) -> "InputGroups":
        if self._x is not None and self._x.shape == x.shape and self._x.dtype == x.dtype \
                and (self._x is x or np.array_equal(self._x, x)):
            return self
        rows = np.ascontiguousarray(x + 0.0 if x.dtype.kind == "f" else x)
        void = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
        _, first, inverse, counts = np.unique(void, return_index=True, return_inverse=True,
                                              return_counts=True)
        self._x = np.array(x, copy=True)
        self.first = first.astype(np.int64)
        self.inverse = inverse.astype(np.int64).ravel()
        self.counts = counts.astype(np.int64)
        return self

    @property
    def n_distinct(self) -> int:
        return int(self.counts.size)

    @property
    def all_distinct(self) -> bool:
        return self.counts.size == self.inverse.size

    def t_is_function_of_x(self, t: np.ndarray) -> bool:
        """True when rows of ``t`` are identical within every group of identical ``x`` rows."""
        if self.all_distinct:
            return True
        return bool(np.array_equal(t, t[self.first[self.inverse]]))


def _tf():
    import ibtoolkit  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    import tensorflow as tf

    return tf


def _build_kernel_sums(dtype: str, with_groups: bool, with_cut: bool = True):
    """Compile the chunked kernel-sum function once (relaxed shapes: any N, d, number of classes).

    Returns per-row logs ``(N, 4 or 6)``: ln row-sum and ln own-class-sum of the KL kernel, the
    same of the BD kernel, then (with groups) ln own-group-sum of the KL and BD kernels.

    The matrix-product form :math:`\lVert t_i\rVert^2 + \lVert t_j\rVert^2 - 2 t_i\cdot t_j` of
    identical rows cancels only up to rounding, at most about
    :math:`4 (d+2)\,\epsilon \max_i \lVert t_i\rVert^2` (``tiny``); left alone, :math:`K_{ii}`
    could fall below 1 (for int8-sized activations in float32 the error is comparable to σ²).  So
    the distance of a row to itself is set to exactly 0, and with ``with_cut`` (``t`` has duplicate
    rows) every squared distance below ``tiny`` too (one more pass over the block).  Then
    :math:`K_{ii} = 1`, identical rows are one component, every sum is >= 1 and
    I(X;T) <= log2(distinct inputs) holds exactly.
    """
    tf = _tf()
    tdt = tf.as_dtype(dtype)
    specs = [tf.TensorSpec([None, None], tdt),   # t, centred
             tf.TensorSpec([None, None], tdt),   # one-hot labels
             tf.TensorSpec([], tdt),             # 1 / (8 sigma^2)
             tf.TensorSpec([], tf.int32),        # chunk size
             tf.TensorSpec([], tdt)]             # tiny: rounding bound of a zero distance
    if with_groups:
        specs.append(tf.TensorSpec([None], tf.int32))

    def kernel_sums(t, onehot, inv_eight_var, chunk, tiny, *groups):
        n = tf.shape(t)[0]
        sq = tf.reduce_sum(t * t, axis=1, keepdims=True)
        ones = tf.ones_like(sq)
        left = tf.concat([t, sq, ones], axis=1)
        right = tf.concat([-2.0 * t, ones, sq], axis=1)
        d2_zero = tf.zeros([], tdt)
        n_chunks = (n + chunk - 1) // chunk
        out = tf.TensorArray(tdt, size=n_chunks, infer_shape=False)
        for c in tf.range(n_chunks):
            start = c * chunk
            stop = tf.minimum(start + chunk, n)
            d2 = tf.matmul(left[start:stop], right, transpose_b=True)
            if with_cut:
                d2 = tf.where(d2 > tiny, d2, d2_zero)       # clamps negatives and rounding at 0
            else:
                d2 = tf.linalg.set_diag(tf.maximum(d2, d2_zero), tf.zeros([stop - start], tdt), k=start)
            k_bd = tf.exp(-inv_eight_var * d2)
            k_kl = tf.square(tf.square(k_bd))              # exp(-d2 / (2 sigma^2))
            own = onehot[start:stop]
            cls_kl = tf.matmul(k_kl, onehot)               # per-class sums
            cls_bd = tf.matmul(k_bd, onehot)
            cols = [tf.reduce_sum(cls_kl, axis=1), tf.reduce_sum(cls_kl * own, axis=1),
                    tf.reduce_sum(cls_bd, axis=1), tf.reduce_sum(cls_bd * own, axis=1)]
            if groups:
                g = groups[0]
                same = tf.equal(g[start:stop, None], g[None, :])
                zero = tf.zeros_like(k_kl)
                cols += [tf.reduce_sum(tf.where(same, k_kl, zero), axis=1),
                         tf.reduce_sum(tf.where(same, k_bd, zero), axis=1)]
            out = out.write(c, tf.math.log(tf.stack(cols, axis=1)))
        return out.concat()

    return tf.function(kernel_sums, input_signature=specs, reduce_retracing=True)


def kde_bounds(ln_sums: np.ndarray, y: np.ndarray, groups: InputGroups | None, n_classes: int):
    """Combine per-row log kernel sums into (I(X;T), I(T;Y)) KL and BD estimates in nats.

    ``groups`` is None when every conditional mixture on X is a single Gaussian.
    """
    ln = ln_sums.astype(np.float64)
    n = ln.shape[0]
    class_counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    ln_n = math.log(n)
    ln_nc = np.log(class_counts[y])
    full_kl, own_kl, full_bd, own_bd = ln[:, 0] - ln_n, ln[:, 1] - ln_nc, ln[:, 2] - ln_n, ln[:, 3] - ln_nc
    if groups is None:
        grp_kl = grp_bd = 0.0
    else:
        ln_ng = np.log(groups.counts[groups.inverse].astype(np.float64))
        grp_kl, grp_bd = ln[:, 4] - ln_ng, ln[:, 5] - ln_ng
    return {
        "ixt_kl": float(np.mean(grp_kl - full_kl)), "ixt_bd": float(np.mean(grp_bd - full_bd)),
        "ity_kl": float(np.mean(own_kl - full_kl)), "ity_bd": float(np.mean(own_bd - full_bd)),
        "mean_ln_kl": float(np.mean(full_kl)), "mean_ln_bd": float(np.mean(full_bd)),
    }


@register_estimator("kde")
class KDEEstimator(Estimator):
    """Kolchinsky–Tracey KDE bounds on I(X;T) and I(T;Y) of ``T + N(0, noise_variance·I)``, in bits.

    Parameters
    ----------
    noise_variance : float
        σ² of the additive Gaussian noise (Saxe et al.: 0.1; 1e-3 is also common).  Every result
        depends on it; it is the estimator's resolution.
    chunk_size : int
        Rows per block of the kernel matrix; memory is O(chunk_size × N).
    dtype : {"float32", "float64"}
        Compute precision.  float32 is accurate to about 1e-5 bits for bounded activations;
        use float64 for large-magnitude activations with a small ``noise_variance``.

    ``estimate`` returns the KL (upper-bound) values as ``ixt``/``ity``; extras hold ``ixt_lower``
    and ``ity_lower`` (Bhattacharyya), ``h_upper``/``h_lower`` (bounds on H(T+ε) in bits),
    ``ixt_ceiling`` (log2 of the number of distinct inputs), ``saturated`` (ixt within 1e-3 bits of
    that ceiling), ``n_distinct_x`` and ``t_function_of_x``.
    """

    def __init__(self, noise_variance: float = 0.1, chunk_size: int = 1024, dtype: str = "float32"):
        if isinstance(noise_variance, bool) or not isinstance(noise_variance, (int, float, np.number)) \
                or not math.isfinite(noise_variance) or noise_variance <= 0:
            raise ValueError(f"noise_variance must be a positive finite number, got {noise_variance!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.noise_variance = float(noise_variance)
        self.chunk_size = int(chunk_size)
        self.dtype = dtype
        self._groups = InputGroups()
        self._compiled = {}

    def _function(self, with_groups: bool, with_cut: bool):
        fn = self._compiled.get((with_groups, with_cut))
        if fn is None:
            fn = self._compiled[(with_groups, with_cut)] = _build_kernel_sums(self.dtype, with_groups, with_cut)
        return fn

    def _estimate(self, x, t, y):
        n, d = t.shape
        groups = self._groups.update(x)
        t_function = groups.t_is_function_of_x(t)
        labels, y_idx = np.unique(y, return_inverse=True)
        n_classes = labels.size
        onehot = np.zeros((n, n_classes), dtype=self.dtype)
        onehot[np.arange(n), y_idx] = 1.0
        tc, inv_eight_var, tiny = _scaled(t, self.noise_variance, self.dtype)
        args = [tc, onehot, inv_eight_var, np.int32(min(self.chunk_size, n)), tiny]
        if not t_function:
            args.append(groups.inverse.astype(np.int32))
        ln_sums = self._function(not t_function, _has_duplicate_rows(t))(*args).numpy()
        r = kde_bounds(ln_sums, y_idx, None if t_function else groups, n_classes)
        h_sigma = 0.5 * d * math.log(2.0 * math.pi * math.e * self.noise_variance)
        ceiling = math.log2(groups.n_distinct)
        ixt = r["ixt_kl"] / LN2
        return EstimateResult(ixt, r["ity_kl"] / LN2, {
            "ixt_lower": r["ixt_bd"] / LN2,
            "ity_lower": r["ity_bd"] / LN2,
            "h_upper": (h_sigma - r["mean_ln_kl"]) / LN2,
            "h_lower": (h_sigma - r["mean_ln_bd"]) / LN2,
            "ixt_ceiling": ceiling,
            "saturated": bool(ixt >= ceiling - 1e-3),
            "n_distinct_x": groups.n_distinct,
            "t_function_of_x": t_function,
        })


def _scaled(t: np.ndarray, noise_variance: float, dtype: str):
    """Centred ``t`` divided by a power of two ``s`` >= its largest magnitude, 1 / (8 σ² / s²), and
    the rounding bound ``tiny`` of a zero squared distance on the scaled rows.

    ``D / 8σ² = (D / s²) · (s² / 8σ²)``: scaling by a power of two is exact, so results are the
    same as without it, but squared norms can no longer overflow (t up to 1e30 in float32 would
    give inf - inf = NaN distances).  The factor is capped at the dtype's largest finite value, so
    a zero distance still gives a kernel of exactly 1 and any other one underflows to 0.
    """
    tc = t.astype(np.float64)
    tc = tc - tc.mean(axis=0)
    peak = float(np.abs(tc).max())
    exponent = math.frexp(peak)[1] if peak > 0 else 0
    tc = np.ldexp(tc, -exponent)
    info = np.finfo(dtype)
    factor = min(math.ldexp(1.0, 2 * exponent) / (8.0 * noise_variance) if exponent < 500 else math.inf,
                 float(info.max))
    tiny = 4.0 * (tc.shape[1] + 2) * float(info.eps) * float(np.einsum("ij,ij->i", tc, tc).max())
    return tc.astype(dtype), np.asarray(factor, dtype=dtype), np.asarray(tiny, dtype=dtype)


def _has_duplicate_rows(t: np.ndarray) -> bool:
    """True when two rows of ``t`` are equal (bytewise after ``+ 0``, so -0.0 equals 0.0)."""
    rows = np.ascontiguousarray(t + 0 if t.dtype.kind == "f" else t)
    void = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    void = np.sort(void)
    return bool(np.any(void[1:] == void[:-1]))
