"""The code the documentation gives readers runs and says what it claims.

docs/store.md is the one description of the activation store for readers without ibtoolkit; its
``read_layer`` recipe (json, zlib and numpy only) must return exactly what ``open_store(...).read``
returns, epochs included, and must reject a corrupted block.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ibtoolkit.store import ActivationStore, open_store

ROOT = Path(__file__).resolve().parents[1]


def _python_block_after(path: Path, heading: str) -> str:
    """The first fenced ``python`` block after a Markdown heading."""
    text = path.read_text(encoding="utf-8")
    start = text.index(heading)
    m = re.compile(r"^```python\n(.*?)^```", re.M | re.S).search(text, start)
    assert m, f"no python block after {heading!r} in {path}"
    return m.group(1)


@pytest.fixture
def read_layer():
    namespace: dict = {}
    exec(compile(_python_block_after(ROOT / "docs" / "store.md", "## Reading without ibtoolkit"),
                 "docs/store.md", "exec"), namespace)
    return namespace["read_layer"]


def _store(directory, rng):
    x = rng.integers(0, 2, (40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    layers = [("dense", 9), ("quant_dense/sign", 13), ("out", 3)]
    acts = {}
    with ActivationStore.create(directory, inputs=x, labels=y, layers=layers,
                                binary=[False, True, False]) as store:
        for epoch in (0, 1, 4, 9):
            acts[epoch] = {"dense": rng.standard_normal((40, 9)).astype(np.float32),
                           "quant_dense/sign": np.where(rng.random((40, 13)) < 0.5, -1.0, 1.0).astype(np.float32),
                           "out": rng.standard_normal((40, 3)).astype(np.float32)}
            store.append(epoch, acts[epoch], {"loss": 1.0 / (epoch + 1)})
    return layers, acts


def test_store_recipe_reads_what_open_store_reads(tmp_path, rng, read_layer):
    run = tmp_path / "run"
    layers, acts = _store(run, rng)
    store = open_store(run)
    for index, (name, width) in enumerate(layers):
        epochs, a = read_layer(str(run), index)
        assert epochs == [0, 1, 4, 9]
        assert a.shape == (4, 40, width)
        np.testing.assert_array_equal(a, store.read(name))
        np.testing.assert_array_equal(a, np.stack([acts[e][name] for e in epochs]))


def test_store_recipe_ignores_a_torn_last_line_and_rejects_a_flipped_bit(tmp_path, rng, read_layer):
    run = tmp_path / "run"
    _store(run, rng)
    with open(run / "epochs.jsonl", "ab") as fh:
        fh.write(b'{"epoch": 10, "blo')                   # what a writer killed mid-line leaves
    epochs, _ = read_layer(str(run), 0)
    assert epochs == [0, 1, 4, 9]
    layer_file = run / open_store(run).manifest["layers"][0]["file"]
    data = bytearray(layer_file.read_bytes())
    data[5] ^= 0x01                                        # one bit of epoch 0's block
    layer_file.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="epoch 0 is corrupted"):
        read_layer(str(run), 0)
