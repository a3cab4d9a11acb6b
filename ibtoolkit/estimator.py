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

Fit, then estimate (scikit-learn's ``fit`` before ``transform``).  Settings that depend on a
layer's values (a binning range from the data) and per-instance caches of the inputs are set by
:meth:`Estimator.fit`, which sees the analysis inputs, the labels and *every recorded epoch of one
layer of one run*, streamed one array at a time, before any estimate of that layer.
:func:`ibtoolkit.information_plane` calls it per (run, layer) in the calling process, and hands
the fitted values (:meth:`Estimator.fitted_params`, plain JSON) to its parallel workers, which
restore them with :meth:`Estimator.set_fitted`; so serial, joblib and Dask tables agree.  A plugin
that needs no fitting inherits a no-op.  Estimators never read a store: whoever calls ``fit``
streams the epochs.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .validation import as_labels, as_samples, check_inputs, check_pair

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
    deterministic : bool
        True when :meth:`estimate` is a function of its arguments and the fitted values only (no
        randomness drawn per call, nothing carried from one call to the next).
        :func:`ibtoolkit.information_plane` then estimates each distinct array of a layer once and
        gives the same result to every epoch that recorded exactly that array (a BNN whose signs
        stopped flipping records the same ±1 codes epoch after epoch).  False by default, so a
        plugin is called on every epoch unless it declares otherwise; the four built-in estimators
        declare True (``ksg`` draws its noise once per shape from ``random_state``).
    """

    name: ClassVar[str] = ""
    discrete_only: ClassVar[bool] = False
    checks_t_finite: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False

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

    def refusal(self, layer: str, discrete: bool | None) -> str | None:
        """Why this estimator cannot measure ``layer``, or None.

        ``discrete`` is the layer's declaration (from the quantizer its consumer applies, see
        :mod:`ibtoolkit.taps`): True for declared discrete codes, False for a continuous layer,
        None when nothing is declared (then only the data can be checked, by :meth:`estimate`).
        A discrete-only estimator refuses a layer declared continuous: asked once per layer, before
        any estimate (``IBCallback`` at ``on_train_begin``, :func:`ibtoolkit.information_plane`
        before reading the layer), never guessed from how many levels a column happens to take.
        """
        if self.discrete_only and discrete is False:
            return (f"estimator {self.name or type(self).__name__!r} measures discrete codes only, and layer "
                    f"{layer!r} is continuous (no quantizer of its consumer declares discrete values); use "
                    f"'binning' or 'kde' for continuous layers")
        return None

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

    # -- fitting ------------------------------------------------------------------------------
    @property
    def needs_fit_data(self) -> bool:
        """True when :meth:`fit` must see the layer's recorded activations (not only x and y).

        False by default; the plane then skips the extra pass over the store for this estimator.
        """
        return False

    def fit(self, x, epochs=(), y=None) -> "Estimator":
        """Fit the data-dependent settings on one layer of one run; returns ``self``.

        Parameters
        ----------
        x : array of shape (N, D)
            The analysis inputs (the input caches are keyed here, once per run).
        epochs : iterable of arrays of shape (N, d)
            The layer's activations at *every* recorded epoch of the run, one array per epoch,
            consumed once (a generator streaming from a store is the intended use).  Only read
            when :attr:`needs_fit_data`.
        y : array of shape (N,), optional
            Integer labels.

        The fitted values are :meth:`fitted_params`; a later ``fit`` replaces them (one fit per
        run and layer, never carried over to the next layer).
        """
        x = as_samples(x, "x")
        if y is not None:
            y = as_labels(y, n=x.shape[0])
        stream = _checked_epochs(epochs, x.shape[0]) if self.needs_fit_data else iter(())
        self._fit(x, stream, y)
        return self

    def fitted_params(self) -> dict[str, Any]:
        """The fitted values, JSON-friendly (e.g. ``{"bin_range": [lo, hi]}``); ``{}`` when none.

        The plane writes them into every row of the layer and gives them to parallel workers.
        """
        return {}

    def set_fitted(self, **fitted) -> "Estimator":
        """Restore values returned by :meth:`fitted_params` (in a worker that did not fit)."""
        if fitted:
            raise ValueError(f"estimator {self.name or type(self).__name__!r} has no fitted values; "
                             f"got {sorted(fitted)}")
        return self

    # -- to implement ---------------------------------------------------------------------------
    def _fit(self, x: np.ndarray, epochs, y) -> None:
        """Fit on the validated inputs and the stream of (N, d) epoch arrays; the default does nothing."""

    def _estimate(self, x: np.ndarray, t: np.ndarray, y: np.ndarray) -> EstimateResult:
        raise NotImplementedError(f"{type(self).__name__} must implement _estimate(x, t, y)")

    def _mutual_information(self, a: np.ndarray, b: np.ndarray) -> float:
        raise NotImplementedError(
            f"the {self.name or type(self).__name__!r} estimator has no generic mutual_information(a, b); "
            f"use one of the estimators that define it (exact, binning, ksg)")


def _checked_epochs(epochs, n: int):
    """Validate each epoch array of a fit stream as it arrives: (N, d), finite."""
    if isinstance(epochs, np.ndarray):
        epochs = [epochs] if epochs.ndim == 2 else list(epochs)
    try:
        iterator = iter(epochs)
    except TypeError:
        raise ValueError(f"epochs must be an iterable of (N, d) arrays, got {type(epochs).__name__}") from None
    for i, t in enumerate(iterator):
        arr = as_samples(t, f"epochs[{i}]")
        if arr.shape[0] != n:
            raise ValueError(f"epochs[{i}] has {arr.shape[0]} rows; x has {n}")
        yield arr


def _plain(value):
    """Make a parameter value JSON-friendly (numpy scalars to Python, tuples to lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
