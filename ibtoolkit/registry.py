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
import json
import re
import warnings
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from .estimator import EstimateResult, Estimator

__all__ = ["register_estimator", "get_estimator", "available_estimators", "registered_class", "FunctionEstimator",
           "PluginWarning", "ENTRY_POINT_GROUP", "load_plugins", "parse_estimator_spec"]

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
        :class:`ValueError`, so a plugin cannot silently shadow a built-in.  A *redefinition* of the
        registered object (same module and qualified name: a notebook cell run again, a module
        reloaded) replaces it without ``override``.
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
    if existing is not None and not override and not _same(existing, origin) \
            and not _redefinition(existing, origin):
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


def _redefinition(cls, origin) -> bool:
    """True when ``origin`` is the registered object defined again (same module and qualified name)."""
    old = getattr(cls, "_registry_origin", cls)
    key = lambda obj: (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))  # noqa: E731
    return key(old) == key(origin) and key(origin)[1] is not None and "<lambda>" not in key(origin)[1]


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


# ------------------------------------------------------------------------------------------------
# estimator specs written as text (the CLI)
# ------------------------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_LITERAL_WORDS = {"None": None, "True": True, "False": False, "null": None, "true": True, "false": False,
                  "nan": float("nan"), "inf": float("inf")}


def parse_estimator_spec(text: str) -> dict:
    """Parse an estimator written as text into a spec dict for :func:`get_estimator`, without eval.

    Accepted forms (the label forms are exactly what ``--list-estimators`` and the
    ``estimator_label`` column print, so a label parses back to its estimator)::

        kde                                      -> {"name": "kde"}
        kde(noise_variance=1e-3)                 -> {"name": "kde", "noise_variance": 0.001}
        kde(noise_variance=0.1, dtype=float32)   strings quoted ('float32') or read as words
        binning(value_range=[-1.0, 1.0], bin_size=None)
        binning:n_bins=10,miller_madow=true      a shell-friendly form
        {"name": "binning", "n_bins": 10}        a JSON object

    Values are Python or JSON literals (numbers, strings, ``None``/``null``, ``True``/``true``,
    lists and tuples of them), read by a small grammar, never evaluated; a bare word that is not a
    literal is a string.
    ``ValueError`` names the problem (the estimator name itself is checked by :func:`get_estimator`).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"an estimator spec must be a non-empty string, got {text!r}")
    text = text.strip()
    if text.startswith("{"):
        return _json_spec(text)
    if ":" in text and "(" not in text:
        name, _, inner = text.partition(":")
    elif text.endswith(")") and "(" in text:
        name, _, inner = text[:-1].partition("(")
    elif "(" in text or ")" in text:
        raise ValueError(f"estimator spec {text!r}: unbalanced parentheses; write name(param=value, ...)")
    else:
        name, inner = text, ""
    name = name.strip()
    if not _NAME.match(name):
        raise ValueError(f"estimator spec {text!r}: {name!r} is not an estimator name (letters, digits, '_', '-')")
    spec = {"name": name}
    for item in _split_top_level(inner, text):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ValueError(f"estimator spec {text!r}: {item.strip()!r} is not of the form param=value")
        if key in spec:
            raise ValueError(f"estimator spec {text!r}: parameter {key!r} given twice")
        spec[key] = _literal(value.strip(), key, text)
    return spec


def _json_spec(text: str) -> dict:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"estimator spec {text!r} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"a JSON estimator spec must be an object with a string 'name', got {text!r}")
    return spec


def _split_top_level(inner: str, text: str) -> list[str]:
    """Split ``a=1, b=[1, 2], c='x,y'`` at the commas outside brackets and quotes."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(inner):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"estimator spec {text!r}: unbalanced brackets")
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    if quote or depth:
        raise ValueError(f"estimator spec {text!r}: unbalanced quotes or brackets")
    items.append(inner[start:])
    return [item for item in items if item.strip()]


def _literal(value: str, key: str, text: str):
    """One value of a spec: a number, a quoted string, a word, None/True/False, or a list/tuple of them.

    Read by a small grammar of its own (the store and the CLI promise no eval, ``ast`` included).
    """
    if value in _LITERAL_WORDS:
        return _LITERAL_WORDS[value]
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" and value[0] not in value[1:-1] \
            and "\\" not in value:
        return value[1:-1]
    if len(value) >= 2 and (value[0], value[-1]) in (("[", "]"), ("(", ")")):
        items = [_literal(item.strip(), key, text) for item in _split_top_level(value[1:-1], text)]
        return items if value[0] == "[" else tuple(items)
    if _WORD.match(value):
        return value  # a bare word: a string, as labels print them
    raise ValueError(f"estimator spec {text!r}: the value of {key!r}, {value!r}, is not a number, a quoted "
                     f"string, a word, None/True/False or a list")
