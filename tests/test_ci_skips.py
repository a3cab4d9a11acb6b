"""Under CI=true a skip for a missing package is a failure (tests/conftest.py); outside CI it stays a skip."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_PROBE = '''
import pytest

def test_needs_a_package_nobody_has():
    pytest.importorskip("ibtoolkit_no_such_package_xyz")

def test_skips_for_another_reason():
    pytest.skip("not about packages")
'''


def _run(tmp_path, ci):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(_PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [False, True])
def test_missing_package_skip_fails_only_under_ci(tmp_path, ci):
    proc = _run(tmp_path, ci)
    out = proc.stdout
    if ci:
        assert proc.returncode == 1, out
        assert "1 failed, 1 skipped" in out
        assert "the 'test' extra in setup.py must bring it" in out
    else:
        assert proc.returncode == 0, out
        assert "2 skipped" in out
