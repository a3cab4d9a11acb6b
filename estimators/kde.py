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
rows (at most ``chunk_size``, fewer at small widths) come from one matrix product of augmented rows
:math:`[t_i, \lVert t_i\rVert^2, 1]\cdot[-2t_j, 1, \lVert t_j\rVert^2]^\top`, clamped at 0;
:math:`K^{BD} = \exp(-D/8\sigma^2)` and :math:`K^{KL} = (K^{BD})^4`; the per-class sums of both
kernels are one product with the one-hot label matrix, and the full row sum is the sum over
classes.  Memory is O(``chunk_size`` × N).  Every sum contains its diagonal term
:math:`K_{ii} = 1`, so it lies in [1, N] and its logarithm is safe in float32 without a
log-sum-exp max pass.  The compiled function is traced once per instance (relaxed shapes), and
the grouping of ``x`` into distinct inputs is computed once and reused while ``x`` is unchanged.

Repeated rows (binary ±1 layers, saturated tanh): identical rows are identical mixture
components, so with the M distinct rows u of ``t``, their multiplicities :math:`c_u` and
per-class multiplicities :math:`c_{uc}`, every sum collapses exactly,

.. math::

    \hat H_{\mathrm{KL}} = h_\sigma - \sum_u \frac{c_u}{N} \ln \sum_v \frac{c_v}{N}
        \exp\!\Big(-\frac{D_{uv}}{2\sigma^2}\Big), \qquad
    \hat H_{\mathrm{KL}}(\tilde T \mid Y{=}c) = h_\sigma - \sum_u \frac{c_{uc}}{N_c} \ln
        \sum_v \frac{c_{vc}}{N_c} \exp\!\Big(-\frac{D_{uv}}{2\sigma^2}\Big),

(BD likewise), which costs O(M²) instead of O(N²): the same kernel runs on the M distinct rows
and multiplies by the (M, C) multiplicity matrix instead of the one-hot labels (sums weighted by
counts, so still >= 1 and safe in float32).  When ``t`` is a function of ``x`` no conditional
sum on X is needed (:math:`H(\tilde T\mid X) = h_\sigma`); otherwise the units are the distinct
(row of ``t``, input) pairs, whose kernel sums within an input group are again exact.  Rows are
gathered when there are at most N/2 distinct units (found by one hash, a sort and an exact check);
above that the N × N path is cheaper than the bookkeeping.
"""
from __future__ import annotations

import math

import numpy as np

from ibtoolkit import Estimator, EstimateResult, register_estimator
from ibtoolkit.estimator import LN2

from .counting import InputGroups, distinct_rows, key_groups

__all__ = ["KDEEstimator", "kde_bounds"]

_DTYPES = ("float32", "float64")
#: Kernel-matrix entries per block, per (1 + d/16): see :meth:`KDEEstimator._block_rows`.
_BLOCK_ENTRIES = 1 << 20


def _tf():
    import ibtoolkit  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    import tensorflow as tf

    return tf


def _build_kernel_sums(dtype: str, with_groups: bool, with_cut: bool = True):
    r"""Compile the chunked kernel-sum function once (relaxed shapes: any P, d, number of classes).

    The P rows ("units") are distinct rows of ``t`` (or every row), with a (P, C) matrix ``w`` of
    per-class multiplicities: :math:`w_{vc}` = number of samples of class c whose row is unit v
    (the one-hot labels when every row is its own unit).  For each unit u it returns the logs
    ``(P, 2 + 2C [+ 2])``: :math:`\ln \sum_v c_v K_{uv}` of the KL and of the BD kernel
    (:math:`c_v = \sum_c w_{vc}`), :math:`\ln \sum_v w_{vc} K_{uv}` for every class c of the KL,
    then of the BD kernel, then (with groups) :math:`\ln \sum_{v: g_v = g_u} c_v K_{uv}` of both.

    The matrix-product form :math:`\lVert t_i\rVert^2 + \lVert t_j\rVert^2 - 2 t_i\cdot t_j` of
    identical rows cancels only up to rounding, at most about
    :math:`4 (d+2)\,\epsilon \max_i \lVert t_i\rVert^2` (``tiny``); left alone, :math:`K_{ii}`
    could fall below 1 (for int8-sized activations in float32 the error is comparable to σ²).  So
    the distance of a row to itself is set to exactly 0, and with ``with_cut`` (the units have
    duplicate rows) every squared distance below ``tiny`` too (one more pass over the block).  Then
    :math:`K_{uu} = 1`, identical rows are one component, every sum a unit's own samples enter is
    >= their count >= 1, and I(X;T) <= log2(distinct inputs) holds exactly.
    """
    tf = _tf()
    tdt = tf.as_dtype(dtype)
    specs = [tf.TensorSpec([None, None], tdt),   # unit rows of t, centred and scaled
             tf.TensorSpec([None, None], tdt),   # per-class multiplicities w (one-hot labels)
             tf.TensorSpec([], tdt),             # 1 / (8 sigma^2)
             tf.TensorSpec([], tf.int32),        # chunk size
             tf.TensorSpec([], tdt)]             # tiny: rounding bound of a zero distance
    if with_groups:
        specs.append(tf.TensorSpec([None], tf.int32))

    def kernel_sums(t, w, inv_eight_var, chunk, tiny, *groups):
        n = tf.shape(t)[0]
        sq = tf.reduce_sum(t * t, axis=1, keepdims=True)
        ones = tf.ones_like(sq)
        left = tf.concat([t, sq, ones], axis=1)
        right = tf.concat([-2.0 * t, ones, sq], axis=1)
        d2_zero = tf.zeros([], tdt)
        n_chunks = (n + chunk - 1) // chunk
        out = tf.TensorArray(tdt, size=n_chunks, infer_shape=False)
        if groups:
            counts = tf.reduce_sum(w, axis=1)              # c_v, multiplicity of each unit
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
            cls_kl = tf.matmul(k_kl, w)                    # weighted per-class sums
            cls_bd = tf.matmul(k_bd, w)
            cols = [tf.reduce_sum(cls_kl, axis=1, keepdims=True),
                    tf.reduce_sum(cls_bd, axis=1, keepdims=True), cls_kl, cls_bd]
            if groups:
                g = groups[0]
                same = tf.equal(g[start:stop, None], g[None, :])
                zero = tf.zeros_like(k_kl)
                cols += [tf.linalg.matvec(tf.where(same, k_kl, zero), counts)[:, None],
                         tf.linalg.matvec(tf.where(same, k_bd, zero), counts)[:, None]]
            out = out.write(c, tf.math.log(tf.concat(cols, axis=1)))
        return out.concat()

    return tf.function(kernel_sums, input_signature=specs, reduce_retracing=True)


def kde_bounds(ln_sums: np.ndarray, w: np.ndarray, unit_group_sizes: np.ndarray | None):
    r"""Combine the per-unit log kernel sums of :func:`_build_kernel_sums` into (I(X;T), I(T;Y))
    KL and BD estimates in nats.

    ``w`` is the (P, C) multiplicity matrix given to the kernel; ``unit_group_sizes`` the number
    :math:`n_g` of samples sharing each unit's input, or None when every conditional mixture on X
    is a single Gaussian.  A sample of class c on unit u contributes (weight :math:`w_{uc}/N`)
    :math:`\ln\tfrac1{N_c}\sum_v w_{vc}K_{uv} - \ln\tfrac1N\sum_v c_v K_{uv}` to I(T;Y), and
    :math:`\ln\tfrac1{n_g}\sum_{v \in g} c_v K_{uv} - \ln\tfrac1N\sum_v c_v K_{uv}` to I(X;T):
    the per-sample formulas of the module docstring with equal rows gathered.
    """
    ln = ln_sums.astype(np.float64)
    w = w.astype(np.float64)
    n_classes = w.shape[1]
    counts = w.sum(axis=1)
    n = float(counts.sum())
    class_counts = w.sum(axis=0)
    ln_nc = np.log(np.maximum(class_counts, 1.0))
    out = {}
    for name, full_col, cls_cols, grp_col in (("kl", 0, slice(2, 2 + n_classes), -2),
                                              ("bd", 1, slice(2 + n_classes, 2 + 2 * n_classes), -1)):
        full = ln[:, full_col] - math.log(n)                       # ln (1/N) sum_v c_v K_uv
        own = np.where(w > 0, ln[:, cls_cols] - ln_nc - full[:, None], 0.0)
        grp = 0.0 if unit_group_sizes is None else ln[:, grp_col] - np.log(unit_group_sizes)
        out[f"ixt_{name}"] = float(counts @ (grp - full) / n)
        out[f"ity_{name}"] = float(np.sum(w * own) / n)
        out[f"mean_ln_{name}"] = float(counts @ full / n)
    return out


@register_estimator("kde")
class KDEEstimator(Estimator):
    """Kolchinsky–Tracey KDE bounds on I(X;T) and I(T;Y) of ``T + N(0, noise_variance·I)``, in bits.

    Parameters
    ----------
    noise_variance : float
        σ² of the additive Gaussian noise (Saxe et al.: 0.1; 1e-3 is also common).  Every result
        depends on it; it is the estimator's resolution.
    chunk_size : int
        Largest number of rows per block of the kernel matrix; memory is O(chunk_size × N).
        (Blocks are smaller at small widths, where cache-sized blocks are faster.)
    dtype : {"float32", "float64"}
        Compute precision.  float32 is accurate to about 1e-5 bits for bounded activations;
        use float64 for large-magnitude activations with a small ``noise_variance``.

    ``estimate`` returns the KL (upper-bound) values as ``ixt``/``ity``; extras hold ``ixt_lower``
    and ``ity_lower`` (Bhattacharyya), ``h_upper``/``h_lower`` (bounds on H(T+ε) in bits),
    ``ixt_ceiling`` (log2 of the number of distinct inputs), ``saturated`` (ixt within 1e-3 bits of
    that ceiling), ``n_distinct_x`` and ``t_function_of_x``.
    """

    deterministic = True  # closed-form sums over (x, t, y); no noise is drawn

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
        # Gather equal rows when there are at most this fraction of distinct ones (0: never; tests).
        self._collapse_below = 0.5

    def _block_rows(self, p: int, d: int) -> int:
        """Rows per block of the P x P kernel matrix: about ``2^20 (1 + d/16)`` entries, but at least
        64 rows and never more than ``chunk_size`` (or P) rows.

        At small d the elementwise passes (clamp, exp, squares, the class products) dominate and
        run fastest on blocks of a few MiB that stay in cache; wide t makes the distance product
        dominate, which wants large blocks.
        """
        return max(1, min(self.chunk_size, p, max(64, _BLOCK_ENTRIES * (16 + d) // (16 * p))))

    def _function(self, with_groups: bool, with_cut: bool):
        fn = self._compiled.get((with_groups, with_cut))
        if fn is None:
            fn = self._compiled[(with_groups, with_cut)] = _build_kernel_sums(self.dtype, with_groups, with_cut)
        return fn

    def _fit(self, x, epochs, y) -> None:
        """Group the inputs into distinct rows once (the cache every estimate of the run reuses)."""
        self._groups.update(x)

    def _estimate(self, x, t, y):
        n, d = t.shape
        groups = self._groups.update(x)
        t_function = groups.t_is_function_of_x(t)
        labels, y_idx = np.unique(y, return_inverse=True)
        n_classes = labels.size
        tc, inv_eight_var, tiny = _scaled(t, self.noise_variance, self.dtype)
        first, inverse, counts = distinct_rows(t)
        t_repeats = counts.size < n
        group_of = None if t_function else groups.inverse
        if not t_function:   # units: distinct (row of t, input) pairs, so group sums stay exact
            first, inverse, counts = key_groups(inverse * groups.n_distinct + groups.inverse)
        if counts.size <= self._collapse_below * n:     # O(P^2) on the P distinct units
            units, unit_of, cut = tc[first], inverse, True
            if group_of is not None:
                group_of = group_of[first]
        else:                                           # O(N^2): every row its own unit
            units, unit_of, cut = tc, np.arange(n), t_repeats
        w = np.bincount(unit_of * n_classes + y_idx, minlength=units.shape[0] * n_classes)
        w = w.reshape(units.shape[0], n_classes).astype(self.dtype)
        args = [units, w, inv_eight_var, np.int32(self._block_rows(units.shape[0], d)), tiny]
        if group_of is not None:
            args.append(group_of.astype(np.int32))
        ln_sums = self._function(group_of is not None, cut)(*args).numpy()
        r = kde_bounds(ln_sums, w, None if group_of is None else groups.counts[group_of].astype(np.float64))
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
