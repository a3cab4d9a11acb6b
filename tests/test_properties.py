"""Property-based tests (hypothesis) of the four built-in estimators: any input gives either a
finite result inside the estimator's documented bounds or a ``ValueError`` that names the problem.

Inputs are drawn over: N = 2..200 samples; x with distinct, duplicated, constant, float or bool
rows; t as ±1 codes, {0, 1} bools, int8/int32 levels, float16/32/64 with magnitudes 1, 1e4, 1e30
(float16: 6e4, its largest finite scale) and 1e-30, constant columns, duplicated rows, t a function
of x or not; y with one class, two, many, all-singleton classes and int8/int32/int64/bool/whole
float dtypes.

Bounds checked (bits; ``ceil`` = log2 of the number of distinct x rows, H(Y) the plug-in label
entropy):

* ``exact`` and ``binning`` (plug-in entropies of discrete codes):
  0 <= I(X;T) <= ceil and 0 <= I(T;Y) <= H(Y), up to 1e-9 (float rounding of the entropy sums);
  ``mutual_information(a, b)`` in [0, min(H(A), H(B))] with the same tolerance.
* ``kde`` (Kolchinsky–Tracey, module docstring of estimators/kde.py): every per-row term of the
  KL/BD I(X;T) is at most ln(N / n_u), so I(X;T) <= H(X) <= ceil; it is >= 0 when t is a function
  of x (then the conditional mixtures are single Gaussians).  I(T;Y) <= H(Y) (same argument).
  The lower (Bhattacharyya) values obey the same ceilings.  Tolerance 1e-3 bits (float32 sums).
* ``ksg`` (estimators/knn.py): I(X;T) and I(T;Y) are clamped at 0 (raw values may dip below);
  Ross's I(T;Y) <= (psi(N') - <psi(N_y)>) / ln 2 over the N' rows not alone in their class
  (because m_i >= k_i), which is H(Y) plus at most 1/(2 ln 2 min N_y); KSG's
  ``mutual_information`` <= (psi(N) - psi(k)) / ln 2 (each marginal count includes >= k points).
  Kozachenko-Leonenko I(X;T) has no documented upper bound (a differential-entropy estimate
  does not see that T+eps is a finite mixture), so only finiteness and >= 0 are checked.

The ``ValueError`` messages allowed are listed per estimator: each names the problem (continuous
data for ``exact``, too few samples for kNN, t not a function of x for ``ksg``, ...).  Anything
else (another exception type, NaN, a bound violated) fails.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import digamma

import ibtoolkit  # noqa: F401  (Keras 2 mode before TensorFlow)
from ibtoolkit import get_estimator

#: CI: 60 derandomized examples per property (seconds); IBTOOLKIT_PROPERTY_EXAMPLES=2000 explores more,
#: IBTOOLKIT_PROPERTY_RANDOM=1 draws a new random sequence.
SETTINGS = settings(max_examples=int(os.environ.get("IBTOOLKIT_PROPERTY_EXAMPLES", "60")), deadline=None,
                    derandomize=os.environ.get("IBTOOLKIT_PROPERTY_RANDOM", "") != "1", database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOL = {"exact": 1e-9, "binning": 1e-9, "kde": 1e-3, "ksg": 1e-9}

#: ValueError messages each estimator may give on the drawn (valid-looking) inputs.
ALLOWED = {
    "exact": [r"looks continuous: column \d+ has \d+ distinct values"],
    "binning": [r"bin_size=.* is too small for values up to"],
    "kde": [],
    "ksg": [r"kNN estimators need more than k=\d+ samples, got \d+",
            r"ksg needs t to be a function of x",
            r"Ross I\(T;Y\) needs at least one class with two or more samples",
            r"too large for the noise"],
}

_X_KINDS = ["distinct", "duplicated", "constant", "float", "bool"]
_T_KINDS = ["pm1", "bool", "int8", "int32", "float16", "float32", "float64"]
_SCALES = [1.0, 1e4, 1e30, 1e-30]
_Y_KINDS = ["single", "two", "many", "singletons"]
_Y_DTYPES = [np.int8, np.int32, np.int64, bool, np.float32]


def _distinct_rows(a) -> tuple[int, np.ndarray]:
    _, inverse, counts = np.unique(np.ascontiguousarray(a), axis=0, return_inverse=True, return_counts=True)
    return counts.size, inverse.ravel()


def _entropy_bits(labels) -> float:
    _, c = np.unique(np.asarray(labels), axis=0, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


@st.composite
def triples(draw, max_n: int = 200):
    """(x, t, y, description) covering the shapes, dtypes and degenerate cases of the module doc."""
    n = draw(st.integers(2, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    desc = {"n": n}

    x_kind = desc["x"] = draw(st.sampled_from(_X_KINDS))
    dx = draw(st.integers(1, 4))
    if x_kind == "distinct":
        x = np.arange(n, dtype=np.float32)[:, None] + np.zeros((1, dx), np.float32)
    elif x_kind == "duplicated":
        x = rng.integers(0, max(1, n // 3), size=(n, 1)).astype(np.float64) + np.zeros((1, dx))
    elif x_kind == "constant":
        x = np.full((n, dx), 3.0)
    elif x_kind == "float":
        x = rng.standard_normal((n, dx))
    else:
        x = rng.integers(0, 2, size=(n, dx)).astype(bool)
    n_x, x_inverse = _distinct_rows(np.asarray(x, dtype=np.float64))

    t_kind = desc["t"] = draw(st.sampled_from(_T_KINDS))
    d = draw(st.integers(1, 6))
    function_of_x = desc["function_of_x"] = draw(st.booleans())
    rows = n_x if function_of_x else n
    if t_kind == "pm1":
        base = rng.choice(np.array([-1.0, 1.0], np.float32), size=(rows, d))
    elif t_kind == "bool":
        base = rng.integers(0, 2, size=(rows, d)).astype(bool)
    elif t_kind == "int8":
        base = rng.integers(-128, 128, size=(rows, d)).astype(np.int8)
    elif t_kind == "int32":
        base = rng.integers(-2 ** 31, 2 ** 31 - 1, size=(rows, d), dtype=np.int64).astype(np.int32) \
            if draw(st.booleans()) else rng.integers(-3, 4, size=(rows, d)).astype(np.int32)
    else:
        dtype = np.dtype(t_kind)
        scale = desc["scale"] = draw(st.sampled_from(_SCALES))
        if dtype == np.float16 and scale > 6e4:
            scale = desc["scale"] = 6e4                                # float16's largest finite scale
        base = (scale * np.tanh(rng.standard_normal((rows, d)))).astype(dtype)
    if draw(st.booleans()):                                           # duplicated rows
        base = base[rng.integers(0, max(1, rows // 4), size=rows)]
        desc["dup_rows"] = True
    if d > 1 and draw(st.booleans()):                                 # constant columns
        base = base.copy()
        base[:, : draw(st.integers(1, d - 1))] = base[0, 0]
        desc["const_cols"] = True
    t = base[x_inverse] if function_of_x else base

    y_kind = desc["y"] = draw(st.sampled_from(_Y_KINDS))
    if y_kind == "single":
        y = np.full(n, 1)
    elif y_kind == "two":
        y = rng.integers(0, 2, size=n)
    elif y_kind == "many":
        y = rng.integers(0, 10, size=n)
    else:
        y = np.arange(n) % 127
    y_dtype = draw(st.sampled_from(_Y_DTYPES))
    if y_dtype is bool:
        y = (y % 2).astype(bool)
    else:
        y = y.astype(y_dtype)
    desc["y_dtype"] = np.dtype(y_dtype).name
    return x, t, y, desc


def _allowed(name: str, exc: ValueError, desc) -> None:
    msg = str(exc)
    assert any(re.search(p, msg) for p in ALLOWED[name]), f"{name}: unexpected ValueError {msg!r} on {desc}"


def _check_point(name: str, result, x, t, y, desc) -> None:
    tol = TOL[name]
    ixt, ity = result.ixt, result.ity
    assert math.isfinite(ixt) and math.isfinite(ity), (name, ixt, ity, desc)
    n_x, _ = _distinct_rows(np.asarray(x, dtype=np.float64))
    ceiling = math.log2(n_x)
    h_y = _entropy_bits(np.asarray(y, dtype=np.int64))
    assert ixt >= -tol and ity >= -tol, (name, ixt, ity, desc)
    if name in ("exact", "binning"):
        assert ixt <= ceiling + tol, (name, ixt, ceiling, desc)
        assert ity <= h_y + tol, (name, ity, h_y, desc)
        assert ity <= ixt + tol or n_x < len(y), (name, ixt, ity, desc)   # data processing, distinct x
        assert result.extras["ixt_ceiling"] == pytest.approx(ceiling, abs=1e-12)
    elif name == "kde":
        lower_ixt, lower_ity = result.extras["ixt_lower"], result.extras["ity_lower"]
        for value in (ixt, lower_ixt):
            assert value <= ceiling + tol, (name, value, ceiling, desc)
        for value in (ity, lower_ity):
            assert value <= h_y + tol, (name, value, h_y, desc)
        if result.extras["t_function_of_x"]:
            assert lower_ixt >= -tol, (name, lower_ixt, desc)
        assert all(math.isfinite(result.extras[k]) for k in ("ixt_lower", "ity_lower", "h_upper", "h_lower"))
    else:  # ksg
        labels, counts = np.unique(np.asarray(y, dtype=np.int64), return_counts=True)
        kept = counts[counts > 1]
        ross_max = (digamma(kept.sum()) - np.sum(kept * digamma(kept)) / kept.sum()) / math.log(2)
        assert ity <= ross_max + tol, (name, ity, ross_max, desc)
        assert all(math.isfinite(result.extras[k]) for k in ("ixt_raw", "ity_raw", "h_t", "h_noise"))


_KDE = get_estimator("kde")
_KSG = get_estimator("ksg")


def _instances():
    """Fresh ``exact``/``binning`` (a "data" range is fitted on the case's t); shared kde/ksg
    (tracing the kde function is the slow part; one instance serving many inputs is the real use)."""
    return [("exact", get_estimator("exact")),
            ("binning", get_estimator("binning")),
            ("binning", get_estimator({"name": "binning", "value_range": "data", "n_bins": 7})),
            ("binning", get_estimator({"name": "binning", "bin_size": 0.07})),
            ("kde", _KDE), ("ksg", _KSG)]


@SETTINGS
@given(triples())
def test_estimate_is_finite_in_bounds_or_a_named_value_error(case):
    x, t, y, desc = case
    for name, est in _instances():
        try:
            result = est.fit(x, [t], y).estimate(x, t, y)   # fit on the layer's one epoch, then estimate
        except ValueError as exc:
            _allowed(name, exc, desc)
            continue
        _check_point(name, result, x, t, y, desc)


@SETTINGS
@given(triples(max_n=120))
def test_pm1_codes_exact_equals_binning(case):
    """Documented in estimators/binning.py: on ±1 codes any bin scheme equals ``exact``."""
    x, t, y, _ = case
    pm1 = np.where(np.asarray(t, dtype=np.float64) > np.median(np.asarray(t, dtype=np.float64)), 1.0, -1.0)
    a = get_estimator("exact").estimate(x, pm1, y)
    for spec in ({"name": "binning"}, {"name": "binning", "bin_size": 0.07},
                 {"name": "binning", "value_range": "data", "n_bins": 2}):
        b = get_estimator(spec).fit(x, [pm1], y).estimate(x, pm1, y)
        assert (b.ixt, b.ity) == pytest.approx((a.ixt, a.ity), abs=1e-9), spec


@st.composite
def pairs(draw):
    x, t, y, desc = draw(triples(max_n=150))
    b = draw(st.sampled_from(["x", "y", "t", "noise"]))
    desc["b"] = b
    other = {"x": x, "y": y, "t": t[::-1].copy(),
             "noise": np.random.default_rng(len(y)).standard_normal((len(y), 2))}[b]
    return t, other, desc


@SETTINGS
@given(pairs())
def test_mutual_information_is_finite_in_bounds_or_a_named_value_error(case):
    a, b, desc = case
    n = len(a)
    for name, est in _instances():
        if name == "kde":
            continue  # no generic mutual_information: see test_kde_has_no_generic_mutual_information
        try:
            value = est.mutual_information(a, b)
        except ValueError as exc:
            _allowed(name, exc, desc)
            continue
        assert isinstance(value, float) and math.isfinite(value), (name, value, desc)
        assert value >= 0.0, (name, value, desc)
        if name == "ksg":
            assert value <= (digamma(n) - digamma(est.k)) / math.log(2) + 1e-9, (name, value, desc)
        else:
            # binning merges values, and H(f(A)) <= H(A): the raw entropies bound both estimators
            ceiling = min(_entropy_bits(np.asarray(v, dtype=np.float64).reshape(n, -1)) for v in (a, b))
            assert value <= ceiling + TOL[name], (name, value, ceiling, desc)


def test_kde_has_no_generic_mutual_information():
    with pytest.raises(NotImplementedError, match="'kde' estimator has no generic mutual_information"):
        _KDE.mutual_information(np.zeros((4, 1)), np.arange(4.0))


def _float16_overflow():
    """(2, 1) float16 column whose 7e4 overflowed to inf in the cast (the warning is the point, not news)."""
    with np.errstate(over="ignore"):
        return np.array([[7e4], [1.0]], np.float32).astype(np.float16)


@pytest.mark.parametrize("name", ["exact", "binning", "kde", "ksg"])
@pytest.mark.parametrize("bad, message", [
    ((np.array([[0.0], [np.nan]]), np.ones((2, 1)), [0, 1]), "x contains 1 NaN or infinite"),
    ((np.zeros((2, 1)), np.array([[np.inf], [1.0]]), [0, 1]), "t contains 1 NaN or infinite"),
    ((np.zeros((2, 1)), _float16_overflow(), [0, 1]),
     "t contains 1 NaN or infinite"),                               # float16 overflow is seen as inf
    ((np.zeros((3, 1)), np.ones((2, 1)), [0, 1, 1]), "same number of samples"),
    ((np.zeros((2, 1)), np.ones((2, 1)), [0.5, 1]), "integer class labels"),
    ((np.zeros((2, 1)), np.ones((2, 1)), [-1, 1]), "non-negative class labels"),
    ((np.zeros((0, 1)), np.ones((0, 1)), []), "x is empty"),
    ((np.zeros((2, 0)), np.ones((2, 1)), [0, 1]), "x has no features"),
    ((np.zeros((2, 1)), np.array([["a"], ["b"]]), [0, 1]), "t must hold numbers"),
    ((np.zeros((2, 1)), np.ones((2, 1)) * 1j, [0, 1]), "t must be real-valued"),
    ((np.zeros((2, 1)), np.ones((2, 1)), np.eye(2)), "one-hot labels"),
])
def test_invalid_inputs_are_named_value_errors(name, bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_estimator(name).estimate(*bad)


# -- regressions: bugs the properties above found -------------------------------------------------
def test_kde_self_distance_is_exactly_zero_for_int8_sized_activations():
    """Found: float32 cancellation in |a|^2 + |b|^2 - 2 a.b left K_ii < 1 for activations ~100, so
    I(X;T) of 3 far-apart points came out 1.5938 > log2 3.  Far-apart distinct points give exactly
    log2 N (every conditional mixture is its own component)."""
    t = np.array([[89, 35, 2], [-59, -50, -118], [-109, -124, -84]], np.int8)
    r = get_estimator("kde").estimate(np.arange(3.0), t, [1, 1, 1])
    assert r.ixt == pytest.approx(math.log2(3), abs=1e-6)
    assert r.extras["ixt_lower"] == pytest.approx(math.log2(3), abs=1e-6)
    assert r.ity == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_kde_identical_rows_of_large_activations_are_one_component(scale):
    """Identical rows must have distance exactly 0 whatever their magnitude (at 1e30 float32
    squared norms overflowed to inf - inf = NaN).  Two distinct codes on 8 distinct inputs, far
    apart: I(X;T) = H(T) = 1 bit, I(T;Y) = 1 bit when the code is the label."""
    t = np.repeat(np.array([[scale, -scale], [-scale, scale]], np.float32), 4, axis=0)
    y = np.repeat([0, 1], 4)
    for dtype in ("float32", "float64"):
        r = get_estimator({"name": "kde", "dtype": dtype}).estimate(np.arange(8.0), t, y)
        assert (r.ixt, r.ity) == pytest.approx((1.0, 1.0), abs=1e-6), dtype
        assert (r.extras["ixt_lower"], r.extras["ity_lower"]) == pytest.approx((1.0, 1.0), abs=1e-6)


def test_ksg_constant_layer_with_a_large_offset_is_zero():
    """Found: a constant layer at 1.25e29 swallowed the noise (1.25e29 + 0.3 == 1.25e29) and raised
    'duplicate rows'.  t is centred before the noise is added; a constant layer carries 0 bits."""
    t = np.full((40, 2), 1.2507187e29, np.float32)
    r = get_estimator("ksg").estimate(np.arange(40.0), t, np.arange(40) % 2)
    assert r.ixt == 0.0 and r.extras["ixt_raw"] == pytest.approx(0.0, abs=1e-12)


def test_ksg_spread_too_large_for_the_noise_is_a_named_value_error():
    t = np.repeat(np.array([[1e30], [-1e30]]), 10, axis=0)   # duplicate rows 2e30 apart: noise lost
    with pytest.raises(ValueError, match=r"too large for the noise \(sigma=0.316\).*rescale t or raise noise_variance"):
        get_estimator("ksg").estimate(np.arange(20.0), t, np.arange(20) % 2)


def test_binning_bin_size_on_float16_does_not_overflow():
    """Found: ``t / bin_size`` in float16 overflowed at 6e4 / 0.07 and was reported as 'bin_size too small'."""
    t = (np.linspace(-1, 1, 50)[:, None] * np.array([[6e4, 3.0]])).astype(np.float16)
    est = {"name": "binning", "bin_size": 0.07}
    a = get_estimator(est).estimate(np.arange(50.0), t, np.arange(50) % 3)
    b = get_estimator(est).estimate(np.arange(50.0), t.astype(np.float64), np.arange(50) % 3)
    assert (a.ixt, a.ity) == (b.ixt, b.ity)
    assert a.ixt == pytest.approx(math.log2(50), abs=1e-12)
