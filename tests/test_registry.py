"""Tests of the estimator registry: decorator, function adapter, lookups, entry-point plugins."""
import importlib
import shutil
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

import ibtoolkit
from ibtoolkit import EstimateResult, Estimator, available_estimators, get_estimator, register_estimator
from ibtoolkit.registry import ENTRY_POINT_GROUP, PluginWarning, load_plugins
from ibtoolkit import registry

PLUGINS = Path(__file__).parent / "plugins"
BUILTINS = ["exact", "binning", "kde", "ksg"]


@pytest.fixture(autouse=True)
def restore_registry():
    """Every test leaves the registry (and sys.modules) exactly as it found it."""
    load_plugins()
    saved = (dict(registry._REGISTRY), dict(registry._PLUGIN_ERRORS), registry._plugins_loaded)
    modules = set(sys.modules)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved[0])
    registry._PLUGIN_ERRORS.clear()
    registry._PLUGIN_ERRORS.update(saved[1])
    registry._plugins_loaded = saved[2]
    for name in set(sys.modules) - modules:
        if name.startswith("ibt_fake_"):
            del sys.modules[name]


def data(n=16, d=3):
    rng = np.random.default_rng(0)
    return rng.integers(0, 2, (n, 4)), np.where(rng.random((n, d)) < 0.5, -1.0, 1.0), rng.integers(0, 2, n)


# -- decorator ----------------------------------------------------------------------------------
def test_decorator_on_a_class_registers_without_instantiating():
    made = []

    @register_estimator("test_cls_est")
    class Scaled(Estimator):
        def __init__(self, alpha: float = 1.0, beta: int = 2):
            made.append(self)
            self.alpha, self.beta = alpha, beta

        def _estimate(self, x, t, y):
            return self.alpha, self.beta

    assert made == [] and isinstance(Scaled, type)                  # returned unchanged, not instantiated
    assert "test_cls_est" in available_estimators()
    est = get_estimator("test_cls_est", alpha=0.5)
    assert type(est) is Scaled and est.name == "test_cls_est"
    assert est.params() == {"alpha": 0.5, "beta": 2}
    assert tuple(est.estimate(*data())) == (0.5, 2.0)
    assert est.describe() == "test_cls_est(alpha=0.5, beta=2)"


def test_decorator_on_a_function_wraps_it_in_an_adapter():
    @register_estimator("test_fn_est")
    def fn(x, t, y, scale=1.0):
        return scale * t.shape[1], float(len(np.unique(y)))

    assert fn(*data(d=3)) == (3.0, 2.0)                              # still a plain function
    est = get_estimator("test_fn_est", scale=2.0)
    assert isinstance(est, Estimator) and est.name == "test_fn_est"
    assert est.params() == {"scale": 2.0}                            # adapter reports the params
    r = est.estimate(*data(d=3))
    assert isinstance(r, EstimateResult) and (r.ixt, r.ity) == (6.0, 2.0)
    assert get_estimator("test_fn_est").params() == {}


def test_function_returning_garbage_is_a_value_error():
    @register_estimator("test_bad_return")
    def fn(x, t, y):
        return "nonsense"

    with pytest.raises(ValueError, match="test_bad_return"):
        get_estimator("test_bad_return").estimate(*data())


def test_decorator_rejects_non_estimators_and_bad_names():
    with pytest.raises(TypeError, match="Estimator subclass"):
        register_estimator("test_not_est")(type("Plain", (), {}))
    with pytest.raises(ValueError, match="name"):
        register_estimator("bad name!")


def test_duplicate_name_needs_override():
    @register_estimator("test_dup")
    def first(x, t, y):
        return 1.0, 1.0

    with pytest.raises(ValueError, match=r"'test_dup' is already registered.*override=True"):
        @register_estimator("test_dup")
        def second(x, t, y):
            return 2.0, 2.0

    with pytest.raises(ValueError, match="override=True"):
        register_estimator("exact")(lambda x, t, y: (0.0, 0.0))    # a plugin cannot shadow a built-in

    @register_estimator("test_dup", override=True)
    def third(x, t, y):
        return 3.0, 3.0

    assert tuple(get_estimator("test_dup").estimate(*data())) == (3.0, 3.0)


# -- lookups ------------------------------------------------------------------------------------
def test_get_estimator_by_name_dict_and_instance():
    by_name = get_estimator("exact", miller_madow=True)
    assert by_name.params() == {"miller_madow": True, "max_levels": 256}
    by_dict = get_estimator({"name": "binning", "n_bins": 10, "value_range": "data"})
    assert by_dict.params() == {"n_bins": 10, "value_range": "data", "bin_size": None, "miller_madow": False}
    nested = get_estimator({"name": "binning", "params": {"n_bins": 7}}, n_bins=9)   # keyword wins
    assert nested.n_bins == 9
    assert get_estimator(by_name) is by_name
    with pytest.raises(ValueError, match="together with an estimator instance"):
        get_estimator(by_name, miller_madow=False)
    with pytest.raises(ValueError, match="'name' key"):
        get_estimator({"n_bins": 3})
    with pytest.raises(ValueError, match="name, a dict or an Estimator"):
        get_estimator(42)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown estimator 'nope'.*available:.*binning.*exact") as info:
        get_estimator("nope")
    for name in available_estimators():
        assert name in str(info.value)


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match=r"'exact' got unknown parameter\(s\) \['n_bins'\].*max_levels"):
        get_estimator("exact", n_bins=30)
    with pytest.raises(ValueError, match="'binning': n_bins must be a positive integer"):
        get_estimator("binning", n_bins=-3)


# -- entry-point plugins ------------------------------------------------------------------------
def fake_distribution(root: Path, entries: dict[str, str]) -> None:
    """Install the fake plugin packages into ``root`` as a distribution declaring ``entries``."""
    for package in ("ibt_fake_good", "ibt_fake_broken"):
        shutil.copytree(PLUGINS / package, root / package)
    info = root / "ibt_fake_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ibt-fake-plugins\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    fake_distribution(tmp_path, {"fake_constant": "ibt_fake_good:ConstantEstimator",
                                 "fake_width": "ibt_fake_good:width_estimator",
                                 "fake_broken": "ibt_fake_broken:Anything"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_entry_point_plugins_load_and_a_broken_one_warns(plugin_dir):
    with pytest.warns(PluginWarning) as caught:
        errors = load_plugins(force=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    broken = [m for m in messages if "fake_broken" in m]
    assert len(broken) == 1
    assert "ibt_fake_broken:Anything" in broken[0] and "deliberately broken" in broken[0]
    assert any("fake_broken" in label and "ImportError" in msg for label, msg in errors.items())
    names = available_estimators()
    assert {"fake_constant", "fake_width", "exact", "binning"} <= set(names)   # built-ins still load
    assert "fake_broken" not in names

    constant = get_estimator("fake_constant", level=3.0)
    assert constant.params() == {"level": 3.0}
    r = constant.estimate(*data())
    assert (r.ixt, r.ity, r.extras) == (3.0, 1.5, {"n_samples": 16})
    width = get_estimator("fake_width", scale=0.5)
    assert width.params() == {"scale": 0.5} and tuple(width.estimate(*data(d=4))) == (2.0, 0.0)


def test_a_working_plugin_alone_loads_silently(tmp_path, monkeypatch):
    fake_distribution(tmp_path, {"fake_constant": "ibt_fake_good:ConstantEstimator"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_plugins(force=True)
    assert not [w for w in caught if "fake_constant" in str(w.message)]
    assert "fake_constant" in available_estimators()


def test_entry_point_plugin_with_a_builtin_name_is_refused_by_name(tmp_path, monkeypatch):
    """A plugin declaring an existing name (here 'exact') is warned about, by name, and the built-in
    stays in place; registering the same name needs override=True (test_duplicate_name_needs_override)."""
    fake_distribution(tmp_path, {"exact": "ibt_fake_good:ConstantEstimator",
                                 "fake_constant": "ibt_fake_good:ConstantEstimator"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.warns(PluginWarning) as caught:
        errors = load_plugins(force=True)
    messages = [str(w.message) for w in caught if "ibt_fake_good:ConstantEstimator" in str(w.message)]
    assert len(messages) == 1 and "exact" in messages[0] and "override=True" in messages[0]
    assert any(label.startswith("exact (") and "already registered" in msg for label, msg in errors.items())
    from estimators.exact import ExactEstimator

    assert type(get_estimator("exact")) is ExactEstimator                      # the built-in is unaffected
    x, t, y = data()
    assert get_estimator("exact").estimate(x, t, y).ixt == pytest.approx(
        get_estimator("binning").estimate(x, t, y).ixt, abs=1e-12)
    assert "fake_constant" in available_estimators()                           # the valid entry still loads


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_resolve_through_installed_entry_points(name):
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert name in eps, f"{name!r} is not declared in the {ENTRY_POINT_GROUP} entry-point group"
    ep = eps[name]
    assert ep.module.startswith("estimators.")
    est = get_estimator(name)
    assert type(est) is ep.load()
    assert est.name == name and name in available_estimators()
    assert isinstance(est.params(), dict)


def test_public_api_is_exported():
    for attr in ("get_estimator", "register_estimator", "available_estimators", "Estimator", "EstimateResult",
                 "PluginWarning"):
        assert hasattr(ibtoolkit, attr)


# -- specs written as text (the CLI) -------------------------------------------------------------
from ibtoolkit.registry import parse_estimator_spec  # noqa: E402


@pytest.mark.parametrize("text, spec", [
    ("kde", {"name": "kde"}),
    ("kde(noise_variance=1e-3)", {"name": "kde", "noise_variance": 0.001}),
    (" binning( n_bins = 10 ) ", {"name": "binning", "n_bins": 10}),
    ("binning(value_range=[-1.0, 1.0], bin_size=None, miller_madow=False)",
     {"name": "binning", "value_range": [-1.0, 1.0], "bin_size": None, "miller_madow": False}),
    ("kde(dtype=float32)", {"name": "kde", "dtype": "float32"}),
    ("kde(dtype='float64')", {"name": "kde", "dtype": "float64"}),
    ("binning(value_range=data)", {"name": "binning", "value_range": "data"}),
    ("binning:n_bins=10,miller_madow=true", {"name": "binning", "n_bins": 10, "miller_madow": True}),
    ('{"name": "binning", "n_bins": 10}', {"name": "binning", "n_bins": 10}),
])
def test_parse_estimator_spec_forms(text, spec):
    assert parse_estimator_spec(text) == spec


@pytest.mark.parametrize("text, message", [
    ("kde(noise_variance=1e-3", "unbalanced parentheses"),
    ("kde(0.1)", "is not of the form param=value"),
    ("kde(a=1, a=2)", "given twice"),
    ("kde(a=__import__('os').system('true'))", "is not a number, a quoted string"),
    ("k de", "is not an estimator name"),
    ('{"n_bins": 3}', "string 'name'"),
    ("binning(value_range=[1, 2)", "unbalanced"),
])
def test_parse_estimator_spec_refuses_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_estimator_spec(text)


@pytest.mark.parametrize("name", ["exact", "binning", "kde", "ksg"])
def test_every_label_parses_back_to_the_same_estimator(name):
    for est in (get_estimator(name), get_estimator(name, **_non_default(name))):
        again = get_estimator(parse_estimator_spec(est.describe()))
        assert type(again) is type(est) and again.params() == est.params() and again.describe() == est.describe()


def _non_default(name):
    return {"exact": {"miller_madow": True}, "binning": {"n_bins": 12, "value_range": "data"},
            "kde": {"noise_variance": 1e-3, "dtype": "float64"}, "ksg": {"k": 5}}[name]


def test_a_notebook_cell_run_again_replaces_its_estimator():
    source = ("from ibtoolkit import register_estimator\n"
              "@register_estimator('test_cell')\n"
              "def cell(x, t, y):\n"
              "    return {value}, 0.0\n")
    for value in (1.0, 2.0):  # the same cell executed twice, as Jupyter does, in one module namespace
        exec(compile(source.format(value=value), "<cell>", "exec"), {"__name__": "__main__"})
    assert tuple(get_estimator("test_cell").estimate(*data())) == (2.0, 0.0)
    with pytest.raises(ValueError, match="already registered"):  # another object under that name still clashes
        register_estimator("test_cell")(lambda x, t, y: (0.0, 0.0))
