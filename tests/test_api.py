"""The curated top-level API of ibtoolkit, and the names that left it (deprecated for one release)."""
import subprocess
import sys
import warnings

import pytest

import ibtoolkit
from ibtoolkit import estimator, registry

CURATED = {"IBCallback", "DivergenceWarning", "open_store", "ActivationStore", "StoreError", "information_plane",
           "read_plane", "get_estimator", "register_estimator", "available_estimators", "Estimator",
           "EstimateResult", "models", "phases", "plotting", "schedules"}
MOVED = {"FunctionEstimator": registry, "PluginWarning": registry, "ENTRY_POINT_GROUP": registry,
         "load_plugins": registry, "nats_to_bits": estimator, "bits_to_nats": estimator}


def test_top_level_is_the_curated_list_and_every_name_resolves():
    assert set(ibtoolkit.__all__) == CURATED
    from ibtoolkit.callback import DivergenceWarning
    from ibtoolkit.plane import read_plane

    assert ibtoolkit.DivergenceWarning is DivergenceWarning and issubclass(DivergenceWarning, Warning)
    assert ibtoolkit.read_plane is read_plane
    assert ibtoolkit.phases.__name__ == "ibtoolkit.phases"


@pytest.mark.parametrize("name", sorted(MOVED))
def test_names_that_left_the_top_level_warn_and_still_work(name):
    with pytest.warns(DeprecationWarning, match=rf"ibtoolkit\.{name} is deprecated.*ibtoolkit\."
                                                rf"{MOVED[name].__name__.split('.')[-1]}"):
        value = getattr(ibtoolkit, name)
    assert value is getattr(MOVED[name], name)
    assert name not in ibtoolkit.__all__ and name not in dir(ibtoolkit)  # no longer advertised


def test_curated_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in CURATED - {"IBCallback", "DivergenceWarning", "models"}:  # TensorFlow-free part
            getattr(ibtoolkit, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ibtoolkit.nope  # noqa: B018


def test_importing_the_top_level_does_not_load_tensorflow():
    code = "import sys, ibtoolkit; from ibtoolkit import get_estimator, open_store; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
