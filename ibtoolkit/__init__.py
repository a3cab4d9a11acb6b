"""ibtoolkit: information-plane analysis of binary and full-precision neural networks.

Importing ibtoolkit selects Keras 2 (``TF_USE_LEGACY_KERAS=1``) for Larq before TensorFlow loads,
and raises :class:`ImportError` with a fix if Keras 3 is already loaded.  TensorFlow itself is
imported only when a part that needs it (callback, models, store writer) is first used, so
estimator-only work stays light.

Public API
----------
Estimators: :class:`Estimator`, :class:`EstimateResult`, :func:`register_estimator`,
:func:`get_estimator`, :func:`available_estimators`.
Recording: :class:`IBCallback`, :func:`open_store`, :class:`ActivationStore`, :mod:`ibtoolkit.models`.
Analysis: :func:`information_plane`, :mod:`ibtoolkit.phases`, :mod:`ibtoolkit.plotting`.
"""
from __future__ import annotations

from ._keras import ensure_legacy_keras as _ensure_legacy_keras

_ensure_legacy_keras()

from .estimator import EstimateResult, Estimator, bits_to_nats, nats_to_bits  # noqa: E402
from .registry import (  # noqa: E402
    ENTRY_POINT_GROUP, FunctionEstimator, PluginWarning, available_estimators, get_estimator,
    load_plugins, register_estimator)

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562) to keep TensorFlow lazy.
_LAZY = {
    "IBCallback": ".callback",
    "ActivationStore": ".store",
    "open_store": ".store",
    "StoreError": ".store",
    "information_plane": ".plane",
    "models": ".models",
    "phases": ".phases",
    "plotting": ".plotting",
    "schedules": ".schedules",
}

__all__ = ["Estimator", "EstimateResult", "register_estimator", "get_estimator", "available_estimators",
           "FunctionEstimator", "PluginWarning", "ENTRY_POINT_GROUP", "load_plugins", "nats_to_bits",
           "bits_to_nats", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ibtoolkit' has no attribute {name!r}")
    from importlib import import_module

    mod = import_module(module, __name__)
    value = mod if module.lstrip(".") == name else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
