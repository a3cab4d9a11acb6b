"""``import ibtoolkit`` selects Keras 2 for Larq, or fails with a fix when it is too late.

Each case runs in a fresh interpreter: the Keras mode is per process and the test process has
already chosen it.  Only ``keras`` (not TensorFlow) is imported where possible, to stay fast.
"""
import os
import subprocess
import sys
import textwrap

import pytest


def _run(code: str, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_import_sets_the_legacy_flag_before_tensorflow_loads():
    proc = _run("""
        import os, sys
        import ibtoolkit
        assert os.environ["TF_USE_LEGACY_KERAS"] == "1", os.environ.get("TF_USE_LEGACY_KERAS")
        assert "tensorflow" not in sys.modules, "importing ibtoolkit must not load TensorFlow"
        import tensorflow as tf
        import tf_keras
        print(tf.keras.__name__, tf_keras.__version__)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, version = proc.stdout.split()[-2:]
    assert name.startswith("tf_keras") and version.startswith("2."), proc.stdout


def test_keras3_loaded_first_is_an_import_error_with_the_fix():
    proc = _run("""
        import keras
        assert int(keras.__version__.split(".")[0]) >= 3
        try:
            import ibtoolkit
        except ImportError as exc:
            print("IMPORT-ERROR:", exc)
        else:
            raise SystemExit("no error")
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = proc.stdout
    assert "IMPORT-ERROR:" in message
    assert "Keras 3 was imported before ibtoolkit" in message
    assert "import ibtoolkit before tensorflow" in message and "TF_USE_LEGACY_KERAS=1" in message


@pytest.mark.parametrize("value", ["0", "false"])
def test_a_contrary_environment_flag_is_refused(value):
    proc = _run("""
        try:
            import ibtoolkit
        except ImportError as exc:
            print("IMPORT-ERROR:", exc)
    """, TF_USE_LEGACY_KERAS=value)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"TF_USE_LEGACY_KERAS={value!r}" in proc.stdout
