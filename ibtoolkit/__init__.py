"""ibtoolkit: information-plane analysis of binary and full-precision neural networks.

Importing ibtoolkit selects Keras 2 (``TF_USE_LEGACY_KERAS=1``) for Larq before TensorFlow loads,
and raises :class:`ImportError` with a fix if Keras 3 is already loaded.  TensorFlow itself is
imported only when a part that needs it (callback, models, store writer) is first used, so
estimator-only work stays light.

Public API
----------
Recording: :class:`IBCallback`, :class:`DivergenceWarning`, :func:`open_store`, :class:`ActivationStore`,
:class:`StoreError`.
Estimators: :class:`Estimator`, :class:`EstimateResult`, :func:`get_estimator`, :func:`register_estimator`,
:func:`available_estimators`.
Analysis: :func:`information_plane`, :func:`read_plane`.
Submodules: :mod:`~ibtoolkit.models`, :mod:`~ibtoolkit.phases`, :mod:`~ibtoolkit.plotting`,
:mod:`~ibtoolkit.schedules`; the rest lives in its own module (:mod:`~ibtoolkit.registry`,
:mod:`~ibtoolkit.estimator`, :mod:`~ibtoolkit.validation`, :mod:`~ibtoolkit.codes`,
:mod:`~ibtoolkit.store`, :mod:`~ibtoolkit.plane`, :mod:`~ibtoolkit.parallel`).
"""
from __future__ import annotations

from ._keras import ensure_legacy_keras as _ensure_legacy_keras

_ensure_legacy_keras()

from .estimator import EstimateResult, Estimator  # noqa: E402
from .registry import available_estimators, get_estimator, register_estimator  # noqa: E402

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562) to keep TensorFlow lazy.
_LAZY = {
    "IBCallback": ".callback",
    "DivergenceWarning": ".callback",
    "ActivationStore": ".store",
    "open_store": ".store",
    "StoreError": ".store",
    "information_plane": ".plane",
    "read_plane": ".plane",
    "models": ".models",
    "phases": ".phases",
    "plotting": ".plotting",
    "schedules": ".schedules",
}

# Names that left the top level: still importable from here for one release, with a
# DeprecationWarning naming their module.
_DEPRECATED = {
    "FunctionEstimator": ".registry",
    "PluginWarning": ".registry",
    "ENTRY_POINT_GROUP": ".registry",
    "load_plugins": ".registry",
    "nats_to_bits": ".estimator",
    "bits_to_nats": ".estimator",
}

__all__ = ["Estimator", "EstimateResult", "register_estimator", "get_estimator", "available_estimators", *_LAZY]


def __getattr__(name: str):
    from importlib import import_module

    module = _LAZY.get(name)
    if module is not None:
        mod = import_module(module, __name__)
        value = mod if module.lstrip(".") == name else getattr(mod, name)
        globals()[name] = value
        return value
    module = _DEPRECATED.get(name)
    if module is not None:
        import warnings

        warnings.warn(f"ibtoolkit.{name} is deprecated and will leave the top level in the next release; "
                      f"import it from ibtoolkit{module}", DeprecationWarning, stacklevel=2)
        return getattr(import_module(module, __name__), name)
    raise AttributeError(f"module 'ibtoolkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
