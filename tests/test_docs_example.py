"""docs/your-own-model.md: its code runs as written (a Larq convnet on digits, IBCallback, a plane, a
phase table), and what it records is what the page says it records."""
import os
import pathlib
import re
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your-own-model.md"


def _code(page: pathlib.Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks, f"no python block in {page}"
    return "\n".join(blocks)


def test_your_own_model_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_code(PAGE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "digits_bnn_plane.png").stat().st_size > 10_000
    printed = proc.stdout.split()
    assert printed[:3] == ["layer", "estimator", "verdict"] and {"conv", "dense", "exact", "kde"} <= set(printed)

    import ibtoolkit

    store = ibtoolkit.open_store(tmp_path / "ib_runs" / "digits_bnn")
    assert store.status == "complete" and store.layers == ["conv", "dense"]
    assert store.widths == {"conv": 256, "dense": 32} and all(store.binary.values())  # the table of the page
    taps = {t["name"]: t for t in store.manifest["model"]["taps"]}
    assert taps["conv"]["tensor"] == "ste_sign(flat) as read by dense"
    assert taps["dense"]["tensor"] == "ste_sign(bn2) as read by logits"
    assert set(np.unique(store.read("conv", [store.epochs[-1]]))) == {-1.0, 1.0}
    plane = ibtoolkit.information_plane(store, "exact", progress=False)
    assert set(plane["dataset"]) == {"digits"} and set(plane["precision"]) == {"binary"}
    assert (plane["status"] == "ok").all() and set(plane["levels"]) == {2}
