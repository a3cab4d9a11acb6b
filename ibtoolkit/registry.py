"""Estimator registry: names to estimator classes, filled by decorators and entry points.

Three ways to add an estimator, all ending in the same table:

1. ``@register_estimator("name")`` on an :class:`~ibtoolkit.Estimator` subclass;
2. ``@register_estimator("name")`` on a plain function ``f(x, t, y, **params) -> (ixt, ity)``
   (wrapped by :class:`FunctionEstimator`);
3. an installed distribution that declares, in its packaging metadata::

       entry_points={"ibtoolkit.estimators": ["name = package.module:Object"]}

   The built-in estimators are declared this very way in ibtoolkit's own ``setup.py``.

Entry points are loaded once, on the first lookup.  A plugin that fails to import produces a
:class:`PluginWarning` naming it and its error; every other estimator still loads.
"""
from __future__ import annotations

import inspect
import warnings
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from .estimator import EstimateResult, Estimator

__all__ = ["register_estimator", "get_estimator", "available_estimators", "registered_class", "FunctionEstimator",
           "PluginWarning", "ENTRY_POINT_GROUP", "load_plugins"]

ENTRY_POINT_GROUP = "ibtoolkit.estimators"

#: Modules of the built-in estimators.  They are declared as entry points in setup.py; this list
#: is used only when ibtoolkit runs from a source tree that was never installed.
_BUILTIN_MODULES = ("estimators.exact", "estimators.binning", "estimators.kde", "estimators.knn")

_REGISTRY: dict[str, type[Estimator]] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


class PluginWarning(UserWarning):
    """An estimator plugin could not be loaded; the others are unaffected."""


class FunctionEstimator(Estimator):
    """Adapter that turns ``f(x, t, y, **params) -> (ixt, ity)`` into an :class:`Estimator`.

    Keyword parameters given to :func:`get_estimator` are stored and passed on to ``f`` on every
    call; :meth:`params` reports them.  ``f`` may also return an :class:`EstimateResult`.
    """

    function: Callable[..., Any]

    def __init__(self, **params):
        self._params = dict(params)

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def _estimate(self, x, t, y):
        out = type(self).function(x, t, y, **self._params)
        if isinstance(out, EstimateResult):
            return out
        try:
            ixt, ity = out
            return EstimateResult(float(ixt), float(ity))
        except (TypeError, ValueError):
            raise ValueError(f"estimator {self.name!r} returned {out!r}; a function estimator must "
                             f"return (ixt, ity) as two numbers in bits, or an EstimateResult") from None


def _wrap_function(name: str, func: Callable) -> type[Estimator]:
    cls = type(f"FunctionEstimator_{name}", (FunctionEstimator,),
               {"function": staticmethod(func), "__doc__": func.__doc__,
                "__module__": getattr(func, "__module__", __name__)})
    return cls


def register_estimator(name: str, *, override: bool = False):
    """Decorator that registers an estimator class or function under ``name``.

    Classes are registered as they are (not instantiated); functions are wrapped by
    :class:`FunctionEstimator` and the decorator returns the function unchanged, so it can still
    be called directly.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"my_kde"``.  Must be a non-empty identifier-like string.
    override : bool
        Replace an estimator already registered under ``name``.  Without it a clash raises
        :class:`ValueError`, so a plugin cannot silently shadow a built-in.
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"estimator name must be a non-empty string of letters, digits, '_' or '-', got {name!r}")

    def decorator(obj):
        if inspect.isclass(obj):
            if not issubclass(obj, Estimator):
                raise TypeError(f"@register_estimator({name!r}) needs an ibtoolkit.Estimator subclass "
                                f"or a function f(x, t, y) -> (ixt, ity), got class {obj.__name__}")
            cls = obj
        elif callable(obj):
            cls = _wrap_function(name, obj)
        else:
            raise TypeError(f"@register_estimator({name!r}) needs a class or a function, got {obj!r}")
        _add(name, cls, override=override, origin=obj)
        return obj

    return decorator


def _add(name: str, cls: type[Estimator], *, override: bool, origin) -> None:
    existing = _REGISTRY.get(name)
    if existing is not None and not override and not _same(existing, origin):
        raise ValueError(f"an estimator named {name!r} is already registered ({_where(existing)}); "
                         f"pass override=True to replace it")
    if existing is not None and _same(existing, origin):
        return
    if issubclass(cls, FunctionEstimator) or cls.__dict__.get("name") in (None, ""):
        cls.name = name
    _REGISTRY[name] = cls
    cls._registry_origin = origin


def _same(cls, origin) -> bool:
    return cls is origin or getattr(cls, "_registry_origin", None) is origin


def _where(cls) -> str:
    origin = getattr(cls, "_registry_origin", cls)
    return f"{getattr(origin, '__module__', '?')}.{getattr(origin, '__qualname__', repr(origin))}"


def load_plugins(force: bool = False) -> dict[str, str]:
    """Load every estimator declared in the ``ibtoolkit.estimators`` entry-point group.

    Returns the plugins that failed, mapped to their error message (each also warned about).
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return dict(_PLUGIN_ERRORS)
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _load_entry_point(ep)
    for module in _BUILTIN_MODULES:  # source checkout without installation
        if module not in _loaded_modules():
            try:
                import_module(module)
            except Exception as exc:  # noqa: BLE001 - a broken module must not take the rest down
                _plugin_failed(module, exc)
    return dict(_PLUGIN_ERRORS)


def _loaded_modules() -> set[str]:
    return {getattr(getattr(c, "_registry_origin", c), "__module__", "") for c in _REGISTRY.values()}


def _load_entry_point(ep) -> None:
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - reported as a PluginWarning, the others load
        _plugin_failed(f"{ep.name} ({ep.value})", exc)
        return
    try:
        if ep.name in _REGISTRY and _same(_REGISTRY[ep.name], obj):
            return  # the module registered itself with the decorator while loading
        register_estimator(ep.name)(obj)
    except (TypeError, ValueError) as exc:
        _plugin_failed(f"{ep.name} ({ep.value})", exc)


def _plugin_failed(label: str, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    _PLUGIN_ERRORS[label] = message
    warnings.warn(f"ibtoolkit estimator plugin {label} failed to load and was skipped: {message}",
                  PluginWarning, stacklevel=3)


def available_estimators() -> list[str]:
    """Sorted names of all registered estimators (built-ins, decorators and plugins)."""
    load_plugins()
    return sorted(_REGISTRY)


def registered_class(name: str) -> type[Estimator] | None:
    """The class registered under ``name`` so far, or None (no plugin is loaded by this call)."""
    return _REGISTRY.get(name)


def get_estimator(spec, **params) -> Estimator:
    """Return an estimator instance.

    Parameters
    ----------
    spec : str, dict or Estimator
        A registered name (``"kde"``), a dict ``{"name": "kde", "noise_variance": 1e-3}``, or an
        instance (returned as is; ``params`` are then not allowed).
    **params
        Keyword parameters of the estimator; they override those in a dict spec.

    Raises
    ------
    ValueError
        Unknown name (the message lists the available ones) or a parameter the estimator does not
        take.
    """
    if isinstance(spec, Estimator):
        if params:
            raise ValueError("parameters cannot be given together with an estimator instance")
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"an estimator dict needs a 'name' key, got keys {sorted(spec)}")
        name = spec.pop("name")
        params = {**spec.pop("params", {}), **spec, **params}
    elif isinstance(spec, str):
        name = spec
    else:
        raise ValueError(f"estimator must be a name, a dict or an Estimator instance, got {type(spec).__name__}")
    load_plugins()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown estimator {name!r}; available: {', '.join(available_estimators())}")
    if not issubclass(cls, FunctionEstimator):
        accepted = cls._param_names()
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(f"estimator {name!r} got unknown parameter(s) {unknown}; "
                             f"it takes {accepted or 'no parameters'}")
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"estimator {name!r}: {exc}") from exc
