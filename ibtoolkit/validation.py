"""Input validation shared by every estimator.

Each check raises :class:`ValueError` with a message that names the argument and the problem,
before any estimator does work, so a bad array never turns into a silent wrong number.
"""
from __future__ import annotations

import numpy as np

__all__ = ["as_samples", "as_labels", "check_inputs", "check_pair", "all_finite", "require_finite"]


def as_samples(a, name: str, *, check_finite: bool = True) -> np.ndarray:
    """Return ``a`` as a finite 2-D float or integer array of shape (N, d).

    A 1-D array is read as N samples of one feature.  Boolean arrays become ``uint8``.
    ``check_finite=False`` leaves the NaN/inf check to the caller, who must then make it (see
    :attr:`ibtoolkit.Estimator.checks_t_finite`); everything else is checked as always.
    """
    try:
        arr = np.asarray(a)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no samples (shape {arr.shape})")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    if check_finite:
        require_finite(arr, name)
    return arr


def require_finite(arr: np.ndarray, name: str) -> None:
    """Raise :class:`ValueError` naming ``name`` and the count if a float array holds NaN or inf."""
    if np.issubdtype(arr.dtype, np.floating) and not all_finite(arr):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


#: Float arrays with at least this many entries are checked through a BLAS product (below).
_BLAS_CHECK_SIZE = 1 << 16


def all_finite(a: np.ndarray) -> bool:
    r"""True when no entry of the float array ``a`` is NaN or infinite.

    Small arrays: ``np.isfinite(a).all()``.  Large float32/float64 2-D arrays: the row sums
    :math:`s = a \mathbf 1` by one BLAS matrix-vector product (multi-threaded, and it allocates no
    boolean array of the size of ``a``, unlike ``isfinite``).  IEEE arithmetic makes this exact in one direction: a
    NaN entry makes its row sum NaN and an infinite one makes it ±inf or NaN, so finite sums prove
    every entry finite.  Non-finite sums can also come from overflow of huge finite values, so
    that case is decided by ``isfinite`` itself.
    """
    if a.size < _BLAS_CHECK_SIZE or a.ndim != 2 or a.dtype not in (np.float32, np.float64):
        return bool(np.isfinite(a).all())
    with np.errstate(over="ignore", invalid="ignore"):
        sums = a @ np.ones(a.shape[1], dtype=a.dtype)
    if np.isfinite(sums).all():
        return True
    return bool(np.isfinite(a).all())


def as_labels(y, n: int | None = None, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-D ``int64`` array of class indices.

    Floats are accepted only when every value is a whole number (Keras often hands labels over
    as float32); one-hot matrices are refused with a hint, since silently taking ``argmax`` could
    hide a mistake.
    """
    try:
        arr = np.asarray(y)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        hint = " (one-hot labels? pass y.argmax(axis=1))" if arr.ndim == 2 else ""
        raise ValueError(f"{name} must be a 1-D array of integer class labels, got shape {arr.shape}{hint}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: it has no samples")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.int64, copy=False)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite labels")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values such as "
                             f"{arr[arr != np.round(arr)][0]!r}")
        out = arr.astype(np.int64)
    else:
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if out.min() < 0:
        raise ValueError(f"{name} must hold non-negative class labels, got {int(out.min())}")
    if n is not None and out.shape[0] != n:
        raise ValueError(f"{name} has {out.shape[0]} labels but there are {n} samples")
    return out


def check_inputs(x, t, y, *, check_t_finite: bool = True):
    """Validate the (x, t, y) triple of :meth:`Estimator.estimate` and return clean arrays.

    ``check_t_finite=False`` skips only the NaN/inf scan of ``t``, for estimators that prove
    finiteness in their own first pass over ``t`` (and raise the same error otherwise).
    """
    x = as_samples(x, "x")
    t = as_samples(t, "t", check_finite=check_t_finite)
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"x and t must have the same number of samples, got {x.shape[0]} and {t.shape[0]}")
    y = as_labels(y, n=x.shape[0])
    return x, t, y


def check_pair(a, b):
    """Validate the (a, b) pair of :meth:`Estimator.mutual_information`."""
    a = as_samples(a, "a")
    b = as_samples(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of samples, got {a.shape[0]} and {b.shape[0]}")
    return a, b
