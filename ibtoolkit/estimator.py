"""The estimator contract: what every mutual-information estimator takes and returns.

An estimator measures, for one layer's representation ``T`` recorded on the analysis set, the two
coordinates of the information plane (Shwartz-Ziv & Tishby, 2017):

.. math::

    I(X;T) = H(T) - H(T \\mid X), \\qquad I(T;Y) = H(T) - H(T \\mid Y),

in **bits**, where ``X`` is the empirical (uniform) distribution over the ``N`` analysis samples
(duplicate input rows allowed) and ``Y`` their integer labels.

Subclasses implement :meth:`Estimator._estimate` (and optionally
:meth:`Estimator._mutual_information`); the public methods validate input first, so every
estimator raises the same :class:`ValueError` messages for the same mistakes.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .validation import check_inputs, check_pair

__all__ = ["Estimator", "EstimateResult", "LN2", "nats_to_bits", "bits_to_nats"]

LN2 = math.log(2.0)


def nats_to_bits(value):
    """Convert an information quantity from nats to bits (divide by ln 2)."""
    return value / LN2


def bits_to_nats(value):
    """Convert an information quantity from bits to nats (multiply by ln 2)."""
    return value * LN2


@dataclass(frozen=True)
class EstimateResult:
    """One point of the information plane.

    Attributes
    ----------
    ixt, ity : float
        I(X;T) and I(T;Y) in bits.
    extras : dict
        Estimator-specific diagnostics with JSON-friendly values, e.g. ``ixt_lower`` (a lower
        bound), ``n_states`` (distinct codes of T), ``ixt_ceiling`` (log2 of the number of distinct
        inputs) and ``saturated`` (whether I(X;T) reached that ceiling).
    """

    ixt: float
    ity: float
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "ixt", float(self.ixt))
        object.__setattr__(self, "ity", float(self.ity))

    def __iter__(self):  # allows ``ixt, ity = est.estimate(x, t, y)``
        yield self.ixt
        yield self.ity

    def as_row(self) -> dict:
        """Flatten to one dict: ``ixt``, ``ity`` and the extras."""
        return {"ixt": self.ixt, "ity": self.ity, **self.extras}


class Estimator:
    """Base class of all information-plane estimators.

    Parameters are the keyword arguments of ``__init__``; each must be stored on an attribute of
    the same name (the scikit-learn convention), so :meth:`params` can report them.

    Class attributes
    ----------------
    name : str
        Registry name, set by :func:`ibtoolkit.register_estimator`.
    discrete_only : bool
        True when the estimator needs discrete codes for ``t`` (it then refuses continuous data).
    checks_t_finite : bool
        True when :meth:`_estimate` itself raises the validation's ``ValueError`` ("t contains k
        NaN or infinite value(s)") for non-finite ``t``, so :meth:`estimate` skips its own scan of
        ``t`` (one pass less over a 10 000 x 1024 layer; ``exact`` proves finiteness while keying).
    """

    name: ClassVar[str] = ""
    discrete_only: ClassVar[bool] = False
    checks_t_finite: ClassVar[bool] = False

    # -- parameters -----------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def params(self) -> dict[str, Any]:
        """The estimator's parameters, as given to ``__init__`` (JSON-friendly values)."""
        return {name: _plain(getattr(self, name)) for name in self._param_names()}

    def describe(self) -> str:
        """A short, stable label such as ``kde(noise_variance=0.1)`` for tables and plots."""
        inner = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.name or type(self).__name__}({inner})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # -- the contract ---------------------------------------------------------------------------
    def estimate(self, x, t, y) -> EstimateResult:
        """Estimate I(X;T) and I(T;Y) in bits.

        Parameters
        ----------
        x : array of shape (N, D)
            Analysis inputs; rows may repeat.
        t : array of shape (N, d)
            One layer's representation of those inputs.
        y : array of shape (N,)
            Integer class labels.

        Raises
        ------
        ValueError
            On shape mismatch, NaN/inf, empty arrays, non-integer labels, or continuous ``t``
            given to a discrete-only estimator.
        """
        x, t, y = check_inputs(x, t, y, check_t_finite=not self.checks_t_finite)
        return self._checked(self._estimate(x, t, y))

    def mutual_information(self, a, b) -> float:
        """I(A;B) in bits between two arrays of shape (N, da) and (N, db)."""
        a, b = check_pair(a, b)
        return float(self._mutual_information(a, b))

    def _checked(self, result) -> EstimateResult:
        """Coerce a ``(ixt, ity)`` tuple to :class:`EstimateResult`; refuse wrong types and NaN."""
        label = self.name or type(self).__name__
        if not isinstance(result, EstimateResult):
            if isinstance(result, tuple) and len(result) == 2:
                result = EstimateResult(*result)
            else:
                raise ValueError(f"estimator {label!r} returned {type(result).__name__}; expected an "
                                 f"EstimateResult or an (ixt, ity) tuple of floats")
        if not (math.isfinite(result.ixt) and math.isfinite(result.ity)):
            raise ValueError(f"estimator {label!r} returned a non-finite value "
                             f"(ixt={result.ixt}, ity={result.ity})")
        return result

    # -- to implement ---------------------------------------------------------------------------
    def _estimate(self, x: np.ndarray, t: np.ndarray, y: np.ndarray) -> EstimateResult:
        raise NotImplementedError(f"{type(self).__name__} must implement _estimate(x, t, y)")

    def _mutual_information(self, a: np.ndarray, b: np.ndarray) -> float:
        raise NotImplementedError(
            f"the {self.name or type(self).__name__!r} estimator has no generic mutual_information(a, b); "
            f"use one of the estimators that define it (exact, binning, ksg)")


def _plain(value):
    """Make a parameter value JSON-friendly (numpy scalars to Python, tuples to lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
