r"""``ksg``: k-nearest-neighbour estimators (Kozachenko–Leonenko, Kraskov–Stögbauer–Grassberger, Ross).

KSG between the discrete analysis inputs X and a layer T is ill-posed (all input distances are
ties), so the information plane uses the noisy representation :math:`\tilde T = T + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, \sigma^2 I_d)` (σ² = ``noise_variance``, shared with ``kde``;
ε drawn once per shape from ``random_state``, so every layer and epoch of one width sees the same
noise), and all distances are max-norm:

* :math:`I(X;T) = h(\tilde T) - h(\tilde T \mid X) = h(\tilde T) - h(\varepsilon)` (exact whenever T
  is a function of X, which holds for any deterministic network, duplicate inputs included).  Both
  entropies are estimated by Kozachenko–Leonenko (Kraskov et al. 2004, eq. 20, max-norm so
  :math:`c_d = 1`):

  .. math:: \hat h = \psi(N) - \psi(k) + \frac dN \sum_i \ln(2 r_i),

  :math:`r_i` the distance from a point to its k-th nearest neighbour; :math:`\hat h(\varepsilon)`
  on the very noise sample that was added to T (same N, d and k), so the estimator's bias (about
  -0.1 bit for a 3-D Gaussian at N = 1024) cancels: a constant layer gives exactly 0.  The closed
  form :math:`\tfrac d2 \ln(2\pi e\sigma^2)` is reported beside it.
* :math:`I(T;Y)` by Ross (2014, "Mutual information between discrete and continuous data sets",
  PLoS ONE 9:e87357) on the same :math:`\tilde T` (Ross's estimator breaks on the ties of raw
  ±1 codes):

  .. math:: \hat I = \psi(N) - \langle\psi(N_{y_i})\rangle + \langle\psi(k_i)\rangle - \langle\psi(m_i)\rangle,

  :math:`d_i` the distance to the :math:`k_i`-th nearest neighbour of the same class
  (:math:`k_i = \min(k, N_{y_i} - 1)`), :math:`m_i` the number of points of any class within
  :math:`d_i` (the :math:`k_i`-th neighbour included, i itself not).  Points alone in their class
  are left out (as scikit-learn does).

One kd-tree query on :math:`\tilde T` for ``4k`` neighbours serves both: :math:`r_i` is the k-th
column, and :math:`m_i` is the rank of the :math:`k_i`-th same-class neighbour in the list.  Rows
whose :math:`k_i`-th same-class neighbour lies beyond that list (minority points in another
class's region, typically 2 % of them) are completed by a second query of the same tree for
``8k`` neighbours of those rows only: :math:`d_i` is the distance of the :math:`k_i`-th
same-class neighbour in it and :math:`m_i` the number of listed points within :math:`d_i`, exact
whenever the list reaches beyond :math:`d_i` (what a radius count gives, ties included, at a
fraction of the cost of a per-class query plus a radius count).  The few rows left after that (typically none) get the per-class kd-tree
query and the radius count on the full tree.

The generic :func:`ksg_mutual_information` (method ``mutual_information(a, b)``) is KSG
algorithm 1 (Kraskov et al. 2004, eq. 8):
:math:`\hat I = \psi(k) + \psi(N) - \langle \psi(n_a + 1) + \psi(n_b + 1)\rangle`, with the k-th
neighbour distance :math:`\epsilon_i` in the joint max-norm space and :math:`n_a, n_b` the points
strictly closer than :math:`\epsilon_i` in each marginal.  Each column is standardised (optionally
after a rank/copula transform, legitimate because MI is invariant under per-variable monotone
maps), then tiny seeded noise (1e-10 × scale) breaks ties.

Out-of-range values.  These estimators are biased: they can dip below 0 where the true MI is 0,
and in high dimension the Kozachenko–Leonenko difference h(T+ε) − h(ε) overshoots wildly (at width
1024 and N = 10 000, hundreds of bits against a ceiling of log2 N ≈ 13.3).  The information-plane
values are therefore clipped to the range of the true values, ``ixt`` to [0, log2(distinct
inputs)] and ``ity`` to [0, H(Y)], with ``saturated`` set when ``ixt`` is at its ceiling;
``mutual_information`` is clamped at 0.  The raw values are in the extras ``ixt_raw``/``ity_raw``
and returned by the module-level functions, which do not clip: an ``ixt_raw`` far above the
ceiling means the kNN estimate is not meaningful for that layer (use ``kde`` or ``--subsample``
with care, or compare with ``exact`` on binary layers).  All results are in bits.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma
from scipy.stats import rankdata

from ibtoolkit import Estimator, EstimateResult, register_estimator
from ibtoolkit.estimator import LN2
from ibtoolkit.validation import as_labels, as_samples, check_pair

from .counting import InputGroups, entropy_from_counts

__all__ = ["KSGEstimator", "kl_entropy", "ross_mutual_information", "ksg_mutual_information"]

_QUERY_FACTOR = 4  # neighbours queried per point = _QUERY_FACTOR * k (+ the point itself)
# (fewer leave many rows to the slower fallback; more make the one big query cost more than the
# fallback it saves)
_SECOND_FACTOR = 8  # neighbours of the second query, for the rows the first list does not resolve
# (it resolves nearly all of those rows; fewer leave more to the radius count, more cost more per row)
_PARALLEL_QUERIES = 1024  # kd-tree queries of at least this many points use every core


# ----------------------------------------------------------------------------- helpers (nats)
def _check_k(k, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n <= k:
        raise ValueError(f"kNN estimators need more than k={k} samples, got {n}")
    return int(k)


def _tree(z: np.ndarray) -> cKDTree:
    # sliding-midpoint tree with small leaves: faster queries than scipy's default at d ~ 10
    return cKDTree(z, leafsize=16, balanced_tree=False, compact_nodes=False)


def _workers(n_queries: int) -> int:
    """Threads for a kd-tree query of ``n_queries`` points: all cores for large batches, one for small.

    scipy starts fresh threads on every call with ``workers=-1``; for a few hundred fallback rows
    that start-up (and, on a loaded machine, waiting for the threads to be scheduled) costs more
    than the query itself.
    """
    return -1 if n_queries >= _PARALLEL_QUERIES else 1


def _neighbours(z: np.ndarray, n_neighbours: int, tree: cKDTree | None = None):
    """Max-norm distances and indices of the ``n_neighbours`` nearest other points of every row
    (``tree``: a kd-tree of ``z`` if one is at hand)."""
    tree = _tree(z) if tree is None else tree
    dist, idx = tree.query(z, k=n_neighbours + 1, p=np.inf, workers=_workers(z.shape[0]))
    return dist[:, 1:], idx[:, 1:]


def _kl_entropy_nats(dist_k: np.ndarray, d: int, k: int) -> float:
    n = dist_k.shape[0]
    r = dist_k
    if np.any(r <= 0):
        raise ValueError("Kozachenko-Leonenko entropy needs distinct points; got duplicate rows "
                         "(add noise or use a discrete estimator)")
    return float(digamma(n) - digamma(k) + d * np.mean(np.log(2.0 * r)))


def _ross_nats(z, y, k, dist, idx, tree: cKDTree | None = None) -> tuple[float, int]:
    """Ross (2014) I(Z;Y) in nats from a precomputed neighbour list; also returns the fallbacks.

    ``dist``/``idx`` (N × m, self excluded, ascending) may be any length m >= 0; ``tree`` is a
    kd-tree of ``z`` if one is at hand.  The number returned beside the value is the number of
    rows the list did not resolve (completed by :func:`_complete_ross_rows`).
    """
    n = z.shape[0]
    _, y, counts = np.unique(y, return_inverse=True, return_counts=True)
    keep = counts[y] > 1
    if not keep.all():  # points alone in their class carry no neighbour information: drop them
        z, y = z[keep], y[keep]
        if z.shape[0] <= 1:
            raise ValueError("Ross I(T;Y) needs at least one class with two or more samples")
        return _ross_nats(z, y, k, *_neighbours(z, min(_QUERY_FACTOR * k, z.shape[0] - 1)))
    k_i = np.minimum(k, counts[y] - 1)
    same = y[idx] == y[:, None]                                   # N × m
    cum = np.cumsum(same, axis=1)
    hit = cum >= k_i[:, None]
    found = hit[:, -1] if hit.shape[1] else np.zeros(n, dtype=bool)
    pos = np.argmax(hit, axis=1) if hit.shape[1] else np.zeros(n, dtype=np.int64)
    m = np.where(found, pos + 1, 0).astype(np.float64)
    missing = np.flatnonzero(~found)
    if missing.size:
        tree = _tree(z) if tree is None else tree
        m[missing] = _complete_ross_rows(z, y, counts, k, tree, missing, min(_SECOND_FACTOR * k, n - 1))
    value = digamma(n) - np.mean(digamma(counts[y])) + np.mean(digamma(k_i)) - np.mean(digamma(m))
    return float(value), int(missing.size)


def _complete_ross_rows(z, y, counts, k, tree, rows, n_second) -> np.ndarray:
    """:math:`m_i` of the given rows (labels ``y`` dense, class sizes ``counts`` all >= 2): the
    number of points other than i within :math:`d_i`, the distance of i's :math:`k_i`-th nearest
    same-class neighbour, exactly as a per-class kd-tree query and a radius count give it (ties
    at :math:`d_i` included).

    First one query of ``tree`` for the ``n_second`` nearest neighbours of these rows: where the
    list holds the :math:`k_i`-th same-class neighbour and its last distance exceeds :math:`d_i`,
    every point within :math:`d_i` is in it, and the count is read off.  The rest (rare) take the
    per-class query and the radius count (loop over classes, not samples).
    """
    m = np.zeros(rows.size)
    todo = np.arange(rows.size)
    k_rows = np.minimum(k, counts[y[rows]] - 1)
    if n_second > 0:
        d2, i2 = tree.query(z[rows], k=n_second + 1, p=np.inf, workers=_workers(rows.size))  # self included
        hit = np.cumsum(y[i2] == y[rows, None], axis=1) > k_rows[:, None]   # self is the 0th same-class point
        pos = np.argmax(hit, axis=1)
        radius = d2[np.arange(rows.size), pos]
        ok = hit[:, -1] & (d2[:, -1] > radius)
        m[ok] = np.count_nonzero(d2[ok] <= radius[ok, None], axis=1) - 1   # self excluded
        todo = np.flatnonzero(~ok)
    for c in np.unique(y[rows[todo]]):                            # loop over classes, not samples
        sel = todo[y[rows[todo]] == c]
        kc = int(min(k, counts[c] - 1))
        dc, _ = _tree(z[y == c]).query(z[rows[sel]], k=kc + 1, p=np.inf, workers=_workers(sel.size))
        m[sel] = tree.query_ball_point(z[rows[sel]], r=dc[:, kc], p=np.inf, return_length=True,
                                       workers=_workers(sel.size)) - 1  # self excluded
    return m


def _prepare(a: np.ndarray, rng: np.random.Generator, copula: bool) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if copula:
        a = rankdata(a, method="average", axis=0)
    a = a - a.mean(axis=0)
    std = a.std(axis=0)
    a = a / np.where(std > 0, std, 1.0)
    return a + 1e-10 * np.maximum(1.0, np.mean(np.abs(a), axis=0)) * rng.standard_normal(a.shape)


# ----------------------------------------------------------------------------- public functions (bits)
def kl_entropy(z, k: int = 3) -> float:
    """Kozachenko–Leonenko differential entropy of the rows of ``z`` (N × d), max-norm, in bits."""
    z = as_samples(z, "z").astype(np.float64)
    k = _check_k(k, z.shape[0])
    dist, _ = _neighbours(z, k)
    return _kl_entropy_nats(dist[:, k - 1], z.shape[1], k) / LN2


def ross_mutual_information(z, y, k: int = 3) -> float:
    """Ross (2014) estimate of I(Z;Y) in bits for continuous ``z`` (N × d) and integer labels ``y``.

    Not clamped: may be slightly negative when Z and Y are independent.
    """
    z = as_samples(z, "z").astype(np.float64)
    y = as_labels(y, n=z.shape[0])
    k = _check_k(k, z.shape[0])
    dist, idx = _neighbours(z, min(_QUERY_FACTOR * k, z.shape[0] - 1))
    return _ross_nats(z, y, k, dist, idx)[0] / LN2


def ksg_mutual_information(a, b, k: int = 3, copula: bool = False, random_state=0) -> float:
    """KSG algorithm 1 estimate of I(A;B) in bits (max-norm, standardised, tie-breaking noise).

    ``a`` (N × da) and ``b`` (N × db) are continuous arrays; not clamped (may be slightly
    negative for independent variables).
    """
    a, b = check_pair(a, b)
    n = a.shape[0]
    k = _check_k(k, n)
    rng = np.random.default_rng(random_state)
    a, b = _prepare(a, rng, copula), _prepare(b, rng, copula)
    dist, _ = _neighbours(np.hstack([a, b]), k)
    radius = np.nextafter(dist[:, k - 1], 0)                      # strictly closer than eps_i
    n_a = _tree(a).query_ball_point(a, r=radius, p=np.inf, return_length=True, workers=-1)
    n_b = _tree(b).query_ball_point(b, r=radius, p=np.inf, return_length=True, workers=-1)
    value = digamma(k) + digamma(n) - np.mean(digamma(n_a) + digamma(n_b))  # counts include self
    return float(value) / LN2


# ----------------------------------------------------------------------------- estimator
@register_estimator("ksg")
class KSGEstimator(Estimator):
    """kNN information-plane estimator: Kozachenko–Leonenko I(X;T), Ross I(T;Y), KSG for pairs.

    Parameters
    ----------
    k : int
        Neighbours (Kraskov et al.: 3).
    noise_variance : float
        σ² of the Gaussian noise added to T (shared meaning with ``kde``; 0.1 by default).
    random_state : int
        Seed of that noise and of the tie-breaking noise of ``mutual_information``.
    copula : bool
        Rank-transform each column before KSG in ``mutual_information``.

    Extras: ``ixt_raw``/``ity_raw`` (unclipped), ``h_t`` (h(T+ε) in bits), ``h_noise`` (the
    Kozachenko–Leonenko estimate that is subtracted), ``h_noise_exact`` (closed form),
    ``ixt_ceiling`` (log2 of the number of distinct inputs), ``saturated`` (ixt within 1e-3 bits of
    it or above), ``n_distinct_x``, ``ross_fallback_rows``.
    """

    deterministic = True  # the noise is drawn once per shape from random_state, the same on every call

    def __init__(self, k: int = 3, noise_variance: float = 0.1, random_state: int = 0, copula: bool = False):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if isinstance(noise_variance, bool) or not isinstance(noise_variance, (int, float, np.number)) \
                or not math.isfinite(noise_variance) or noise_variance <= 0:
            raise ValueError(f"noise_variance must be a positive finite number, got {noise_variance!r}")
        if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
            raise ValueError(f"random_state must be an integer seed, got {random_state!r}")
        if not isinstance(copula, (bool, np.bool_)):
            raise ValueError(f"copula must be True or False, got {copula!r}")
        self.k = int(k)
        self.noise_variance = float(noise_variance)
        self.random_state = int(random_state)
        self.copula = bool(copula)
        self._groups = InputGroups()
        self._noise = {}
        self._h_noise = {}

    def _noise_for(self, shape) -> np.ndarray:
        noise = self._noise.get(shape)
        if noise is None:
            rng = np.random.default_rng(self.random_state)
            noise = self._noise[shape] = math.sqrt(self.noise_variance) * rng.standard_normal(shape)
        return noise

    def _noise_entropy(self, shape, k: int) -> float:
        """Kozachenko–Leonenko entropy of the noise sample of this shape, in nats (cached)."""
        key = (shape, k)
        h = self._h_noise.get(key)
        if h is None:
            noise = self._noise_for(shape)
            dist, _ = _neighbours(noise, k)
            h = self._h_noise[key] = _kl_entropy_nats(dist[:, k - 1], shape[1], k)
        return h

    def _fit(self, x, epochs, y) -> None:
        """Group the inputs into distinct rows once (the cache every estimate of the run reuses).

        The noise sample needs no fit: it is drawn from ``random_state`` per shape, the same
        in every process."""
        self._groups.update(x)

    def _estimate(self, x, t, y):
        n, d = t.shape
        k = _check_k(self.k, n)
        groups = self._groups.update(x)
        if not groups.t_is_function_of_x(t):
            raise ValueError("ksg needs t to be a function of x: some identical rows of x have different "
                             "rows of t, so h(T+noise | X) is not the noise entropy (use 'kde', which "
                             "handles that case)")
        tc = t.astype(np.float64)
        tc -= tc.mean(axis=0)  # distances are translation invariant; a large offset would swamp the noise
        z = tc + self._noise_for(t.shape)
        tree = _tree(z)
        dist, idx = _neighbours(z, min(_QUERY_FACTOR * k, n - 1), tree)
        if not np.all(dist[:, k - 1] > 0):
            raise ValueError(f"ksg: t spans values up to {float(np.abs(tc).max()):.3g} around its mean, too large "
                             f"for the noise (sigma={math.sqrt(self.noise_variance):.3g}): the noise is lost to "
                             f"float64 rounding and T+noise has duplicate rows; rescale t or raise noise_variance")
        h_t = _kl_entropy_nats(dist[:, k - 1], d, k)
        h_noise = self._noise_entropy(t.shape, k)
        h_noise_exact = 0.5 * d * math.log(2.0 * math.pi * math.e * self.noise_variance)
        ity_nats, n_fallback = _ross_nats(z, y, k, dist, idx, tree)
        ixt_raw, ity_raw = (h_t - h_noise) / LN2, ity_nats / LN2
        ceiling = math.log2(groups.n_distinct)
        h_y = entropy_from_counts(np.unique(y, return_counts=True)[1])
        # the true values lie in [0, log2 |X|] and [0, H(Y)]: clip there, keep the raw estimates
        ixt, ity = min(max(ixt_raw, 0.0), ceiling), min(max(ity_raw, 0.0), h_y)
        return EstimateResult(ixt, ity, {
            "ixt_raw": ixt_raw, "ity_raw": ity_raw, "h_t": h_t / LN2, "h_noise": h_noise / LN2,
            "h_noise_exact": h_noise_exact / LN2,
            "ixt_ceiling": ceiling, "saturated": bool(ixt >= ceiling - 1e-3),
            "n_distinct_x": groups.n_distinct, "ross_fallback_rows": n_fallback,
        })

    def _mutual_information(self, a, b):
        return max(ksg_mutual_information(a, b, k=self.k, copula=self.copula,
                                          random_state=self.random_state), 0.0)
