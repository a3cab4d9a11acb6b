"""Tests of the activation store (the package ibtoolkit/store/): round trip, resume, ordering, validation,
lock, hostile manifests, corrupted files, unwritable targets.  Crash (SIGKILL) tests live in
tests/test_store_crash.py.

Ground truth is always the exact array that was written: float32 layers must come back
bit-identical, float16 layers equal to ``a.astype(float16)``, binary layers as the same ±1 values.
"""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ibtoolkit import _atomic
from ibtoolkit.store import ActivationStore, StoreError, open_store

N = 40
LAYERS = [("dense", 6), ("quant/sign", 11), ("out", 3)]
BINARY = [False, True, False]


def make_acts(seed, n=N):
    rng = np.random.default_rng(seed)
    return {"dense": rng.standard_normal((n, 6)).astype(np.float32),
            "quant/sign": np.where(rng.random((n, 11)) < 0.5, -1.0, 1.0).astype(np.float32),
            "out": rng.standard_normal((n, 3)).astype(np.float32)}


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2, (N, 12)).astype(np.float32)
    y = rng.integers(0, 3, N)
    return x, y


def create(directory, data, **kw):
    x, y = data
    kw.setdefault("layers", LAYERS)
    kw.setdefault("binary", BINARY)
    return ActivationStore.create(directory, inputs=x, labels=y, **kw)


def layer_files(directory):
    """(name, size in bytes) of every layer file and temporary file of a store."""
    d = Path(directory)
    return sorted((p.name, p.stat().st_size) for p in [*d.glob("layer_*"), *d.glob(".*.tmp-*")])


def block_bytes(width, binary, n=N, itemsize=4):
    """Size of one epoch block: N packed rows of ceil(width / 8) bytes, or N rows of width floats."""
    return n * ((width + 7) // 8 if binary else width * itemsize)


@pytest.fixture
def written(tmp_path, data):
    """A closed store with epochs 0, 1, 5 and their activations."""
    d = tmp_path / "run"
    acts = {e: make_acts(e) for e in (0, 1, 5)}
    with create(d, data, model={"name": "mlp", "summary": "text"}, dataset={"name": "toy", "n": N},
                schedule=[0, 1, 5]) as s:
        for e, a in acts.items():
            s.append(e, a, None if e == 0 else {"loss": 1.0 / e, "accuracy": 0.5})
    return d, acts


# ---------------------------------------------------------------------------------------- round trip
def test_round_trip_reads_back_exactly(written, data):
    d, acts = written
    s = open_store(d)
    assert s.layers == ["dense", "quant/sign", "out"]
    assert s.widths == {"dense": 6, "quant/sign": 11, "out": 3}
    assert s.binary == {"dense": False, "quant/sign": True, "out": False}
    assert s.epochs.dtype == np.int64 and s.epochs.tolist() == [0, 1, 5]
    for name in s.layers:
        got = s.read(name)
        assert got.dtype == np.float32 and got.shape == (3, N, s.widths[name])
        for i, e in enumerate((0, 1, 5)):
            np.testing.assert_array_equal(got[i], acts[e][name])
    binary = s.read("quant/sign")
    assert set(np.unique(binary).tolist()) == {-1.0, 1.0}
    np.testing.assert_array_equal(s.read_epoch("out", 5), acts[5]["out"])
    np.testing.assert_array_equal(s.read("dense", [5, 0]), np.stack([acts[5]["dense"], acts[0]["dense"]]))
    np.testing.assert_array_equal(s.inputs, data[0])
    assert s.labels.dtype == np.int64
    np.testing.assert_array_equal(s.labels, data[1])
    assert s.metrics == {0: {}, 1: {"loss": 1.0, "accuracy": 0.5}, 5: {"loss": 0.2, "accuracy": 0.5}}
    m = s.manifest
    assert m["model"]["name"] == "mlp" and m["dataset"] == {"name": "toy", "n": N}
    assert m["schedule"] == [0, 1, 5] and m["status"] == "running"
    assert [r["epoch"] for r in m["epochs"]] == [0, 1, 5]
    m["layers"][0]["name"] = "changed"  # a deep copy: the store is unaffected
    assert s.layers[0] == "dense"


def test_block_checksums_are_the_crc32_of_each_stored_block(tmp_path, data):
    import zlib

    acts = {0: make_acts(0), 1: make_acts(1), 2: make_acts(0)}  # epoch 2 records epoch 0's arrays again
    with create(tmp_path / "run", data) as s:
        for e, a in acts.items():
            s.append(e, a)
    store = open_store(tmp_path / "run")
    dense = store.block_checksums("dense")
    assert dense == {e: zlib.crc32(a["dense"].tobytes()) for e, a in acts.items()}   # float32 rows as stored
    packed = store.block_checksums("quant/sign")                                      # bit-packed ±1 rows
    assert packed == {e: zlib.crc32(np.packbits(a["quant/sign"] > 0, axis=1).tobytes()) for e, a in acts.items()}
    assert packed[0] == packed[2] != packed[1]
    with pytest.raises(ValueError, match="unknown layer"):
        store.block_checksums("nope")


def test_iter_chunks_covers_all_epochs_in_order(written):
    d, acts = written
    s = open_store(d)
    chunks = list(s.iter_chunks("quant/sign", chunk=2))
    assert [c[0].tolist() for c in chunks] == [[0, 1], [5]]
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), s.read("quant/sign"))
    with pytest.raises(ValueError, match="chunk"):
        list(s.iter_chunks("dense", chunk=0))


def test_format_is_readable_with_numpy_and_json_alone(written):
    """The recipe of docs/store.md ("Reading without ibtoolkit"): manifest + epoch log + one np.fromfile per layer + unpackbits; each line's
    CRC-32 is zlib's of the record without it as canonical JSON, and every block's its own."""
    import zlib

    d, acts = written
    manifest = json.loads((d / "manifest.json").read_text())
    lines = (d / "epochs.jsonl").read_text().splitlines(keepends=True)
    records = [json.loads(line) for line in lines if line.endswith("\n")]
    assert manifest["schema_version"] == 2 and [r["epoch"] for r in records] == [0, 1, 5]
    for rec in records:
        body = {k: v for k, v in rec.items() if k != "crc32"}
        assert rec["crc32"] == zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        for f, (offset, size, crc) in rec["blocks"].items():
            with open(d / f, "rb") as fh:
                fh.seek(offset)
                assert zlib.crc32(fh.read(size)) == crc
    for lay in manifest["layers"]:
        block = lay["block"]
        assert block["bytes"] == block_bytes(lay["width"], lay["binary"])  # 1 bit per unit when binary
        assert block["dtype"] == ("|u1" if lay["binary"] else "<f4")
        path = d / lay["file"]
        assert path.stat().st_size == len(records) * block["bytes"]
        stack = np.fromfile(path, dtype=block["dtype"]).reshape(len(records), *block["shape"])
        for k, rec in enumerate(records):
            assert rec["blocks"][lay["file"]][:2] == [k * block["bytes"], block["bytes"]]
            a = stack[k]
            if lay["binary"]:
                a = np.unpackbits(a, axis=1, count=lay["width"]).astype(np.float32) * 2 - 1
            np.testing.assert_array_equal(a, acts[rec["epoch"]][lay["name"]])
    np.testing.assert_array_equal(np.load(d / "labels.npy", allow_pickle=False), open_store(d).labels)


def test_float16_storage(tmp_path, data):
    a = make_acts(3)
    with create(tmp_path / "r", data, dtype="float16") as s:
        s.append(0, a)
    s = open_store(tmp_path / "r")
    got = s.read("dense")[0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, a["dense"].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(s.read("quant/sign")[0], a["quant/sign"])
    raw = np.fromfile(tmp_path / "r" / "layer_00_dense.bin", dtype=np.float16)
    np.testing.assert_array_equal(raw.reshape(N, 6), a["dense"].astype(np.float16))


@pytest.mark.parametrize("width", [1, 7, 8, 9, 16, 17])
def test_bit_packing_round_trips_every_width(tmp_path, data, width):
    rng = np.random.default_rng(width)
    t = np.where(rng.random((N, width)) < 0.5, -1, 1).astype(np.int8)
    with create(tmp_path / "r", data, layers=[("b", width)], binary=[True]) as s:
        s.append(0, {"b": t})
        got = s.read("b")[0]
    np.testing.assert_array_equal(got, t.astype(np.float32))
    packed = np.fromfile(tmp_path / "r" / "layer_00_b.bin", dtype=np.uint8).reshape(N, -1)
    np.testing.assert_array_equal(packed, np.packbits(t > 0, axis=1))


# ---------------------------------------------------------------------------------------- resume, order
def test_resume_appends_after_reopen(written, data):
    d, acts = written
    with create(d, data) as s:
        assert s.epochs.tolist() == [0, 1, 5]
        extra = make_acts(6)
        s.append(6, extra, {"loss": 0.1})
        assert s.events[-1]["kind"] == "resumed"
    s = open_store(d)
    assert s.epochs.tolist() == [0, 1, 5, 6]
    np.testing.assert_array_equal(s.read("dense")[3], extra["dense"])
    np.testing.assert_array_equal(s.read("dense")[2], acts[5]["dense"])
    assert s.metrics[6] == {"loss": 0.1}
    assert s.manifest["schedule"] == [0, 1, 5]  # kept when the resuming writer passes none


def test_resume_refused_when_incompatible(written, data):
    d, _ = written
    x, y = data
    with pytest.raises(StoreError, match="resume=True"):
        create(d, data, resume=False)
    with pytest.raises(StoreError, match="layers"):
        create(d, data, layers=[("dense", 6), ("quant/sign", 12), ("out", 3)])
    with pytest.raises(StoreError, match="layers"):
        create(d, data, binary=[False, False, False])
    x2 = x.copy()
    x2[0, 0] = 1 - x2[0, 0]
    with pytest.raises(StoreError, match="inputs"):
        ActivationStore.create(d, inputs=x2, labels=y, layers=LAYERS, binary=BINARY)
    y2 = y.copy()
    y2[3] = (y2[3] + 1) % 3
    with pytest.raises(StoreError, match="labels"):
        ActivationStore.create(d, inputs=x, labels=y2, layers=LAYERS, binary=BINARY)
    with pytest.raises(StoreError, match="dtype"):
        create(d, data, dtype="float16")
    assert open_store(d).epochs.tolist() == [0, 1, 5]  # nothing changed


def test_epochs_must_increase_strictly(tmp_path, data):
    with create(tmp_path / "r", data) as s:
        s.append(3, make_acts(3))
        for bad in (3, 2):
            with pytest.raises(ValueError, match="increase strictly"):
                s.append(bad, make_acts(bad))
        for bad in (-1, 2.0, True):
            with pytest.raises(ValueError, match="epoch"):
                s.append(bad, make_acts(0))
    with create(tmp_path / "r", data) as s:  # also across a reopen
        with pytest.raises(ValueError, match="increase strictly"):
            s.append(3, make_acts(3))
        s.append(4, make_acts(4))
    assert open_store(tmp_path / "r").epochs.tolist() == [3, 4]


def test_invalid_activations_write_nothing(tmp_path, data):
    d = tmp_path / "r"
    s = create(d, data)
    s.append(0, make_acts(0))
    before = (layer_files(d), (d / "epochs.jsonl").read_bytes())
    cases = []
    a = make_acts(1)
    a["quant/sign"][4, 7] = 0.0  # binary layer holding a 0
    cases.append((a, "other than"))
    a = make_acts(1)
    a["quant/sign"][0, 0] = 0.5
    cases.append((a, "other than"))
    a = make_acts(1)
    a["quant/sign"] = np.abs(a["quant/sign"]) * 2  # all 2s
    cases.append((a, "other than"))
    a = make_acts(1)
    a["out"] = a["out"][:, :2]
    cases.append((a, "expected shape"))
    a = make_acts(1)
    del a["dense"]
    cases.append((a, "missing"))
    a = make_acts(1)
    a["extra"] = a["out"]
    cases.append((a, "unknown"))
    a = make_acts(1)
    a["dense"] = a["dense"].astype(str)
    cases.append((a, "real numbers"))
    for acts, msg in cases:
        with pytest.raises(ValueError, match=msg):
            s.append(1, acts)
        assert (layer_files(d), (d / "epochs.jsonl").read_bytes()) == before
    with pytest.raises(ValueError, match="metric"):
        s.append(1, make_acts(1), {"loss": [1.0, 2.0]})
    assert (layer_files(d), (d / "epochs.jsonl").read_bytes()) == before
    s.append(1, make_acts(1))  # the store is still usable
    s.close()
    assert open_store(d).epochs.tolist() == [0, 1]


def test_nonfinite_continuous_values_and_metrics_are_kept(tmp_path, data):
    """A diverging run keeps its evidence: NaN/inf in continuous layers and metrics round-trip."""
    a = make_acts(0)
    a["dense"][0, 0] = np.nan
    a["dense"][1, 1] = np.inf
    with create(tmp_path / "r", data) as s:
        s.append(0, a, {"loss": float("nan"), "val_loss": float("inf")})
    s = open_store(tmp_path / "r")
    np.testing.assert_array_equal(s.read("dense")[0], a["dense"])
    assert np.isnan(s.metrics[0]["loss"]) and s.metrics[0]["val_loss"] == np.inf


def test_events_status_and_context_manager(tmp_path, data):
    d = tmp_path / "r"
    with create(d, data) as s:
        s.append(0, make_acts(0))
        s.add_event("diverged", "loss is NaN", epoch=0)
        s.set_status("diverged")
        with pytest.raises(ValueError, match="status"):
            s.set_status("finished")
    r = open_store(d)
    assert r.status == "diverged"
    assert [(e["kind"], e["message"], e["epoch"]) for e in r.events] == [("diverged", "loss is NaN", 0)]
    with pytest.raises(RuntimeError):
        with create(d, data) as s:
            s.append(1, make_acts(1))
            raise RuntimeError("boom")
    r = open_store(d)
    assert r.status == "interrupted" and r.events[-1]["kind"] == "interrupted"
    assert "boom" in r.events[-1]["message"] and r.epochs.tolist() == [0, 1]


def test_readers_cannot_write_and_closed_writers_refuse(written, data):
    d, _ = written
    r = open_store(d)
    with pytest.raises(StoreError, match="read-only"):
        r.append(9, make_acts(9))
    s = create(d, data)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.append(9, make_acts(9))
    assert s.read("dense").shape == (3, N, 6)  # reading after close still works


def test_unknown_layer_and_epoch(written):
    s = open_store(written[0])
    with pytest.raises(ValueError, match="unknown layer"):
        s.read("nope")
    with pytest.raises(ValueError, match=r"epoch\(s\) \[2\]"):
        s.read("dense", [1, 2])


def test_create_argument_validation(tmp_path, data):
    bad = [
        (dict(binary=[True, False]), "one flag per layer"),
        (dict(layers=[("a", 0)], binary=[False]), "width"),
        (dict(layers=[("a", 2), ("a", 3)], binary=[False, False]), "twice"),
        (dict(layers=[("../../etc", 2)], binary=[False]), r"\.\."),
        (dict(layers=[("/abs", 2)], binary=[False]), "absolute"),
        (dict(layers=[], binary=[]), "at least one"),
        (dict(dtype="int8"), "dtype"),
        (dict(model={"f": object()}), "JSON"),
    ]
    for kw, msg in bad:
        with pytest.raises(ValueError, match=msg):
            create(tmp_path / "r", data, **kw)
    with pytest.raises(ValueError, match="labels"):
        ActivationStore.create(tmp_path / "r", inputs=data[0], labels=data[1][:-1], layers=LAYERS, binary=BINARY)
    assert not (tmp_path / "r").exists()  # argument errors are raised before touching the disk


def test_user_layer_names_become_safe_file_names(tmp_path, data):
    names = ["a/b", "a_b", "we ird*?:name", "..hidden", "C1\\x", "ü"]
    d = tmp_path / "r"
    with create(d, data, layers=[(n, 2) for n in names], binary=[False] * len(names)) as s:
        s.append(0, {n: np.full((N, 2), i, np.float32) for i, n in enumerate(names)})
    s = open_store(d)
    assert s.layers == names
    files = [lay["file"] for lay in s.manifest["layers"]]
    assert files == ["layer_00_a_b.bin", "layer_01_a_b.bin", "layer_02_we_ird_name.bin", "layer_03_hidden.bin",
                     "layer_04_C1_x.bin", "layer_05_.bin"]
    for i, n in enumerate(names):
        assert (d / files[i]).resolve().parent == d.resolve()
        np.testing.assert_array_equal(s.read(n)[0], np.full((N, 2), i, np.float32))


def test_stray_bytes_ignored_by_readers_and_cleaned_by_writers(written, data):
    """A killed writer's leftovers: part of an uncommitted block after the committed ones, a manifest
    temp file and a torn log line.  Readers see only the committed epochs; a writer cuts the rest."""
    d, acts = written
    committed = layer_files(d)
    for name in ("layer_00_dense.bin", "layer_01_quant_sign.bin"):
        with (d / name).open("ab") as f:
            f.write(b"half-written block")
    stray = d / ".manifest.json.tmp-99"
    stray.write_bytes(b"half-written")
    with (d / "epochs.jsonl").open("ab") as f:
        f.write(b'{"crc32":1,"epoch":9,"bl')  # torn last line of a killed writer
    r = open_store(d)
    assert r.epochs.tolist() == [0, 1, 5]
    np.testing.assert_array_equal(r.read("dense")[2], acts[5]["dense"])
    with create(d, data) as s:
        assert s.epochs.tolist() == [0, 1, 5]
        assert not stray.exists() and [f for f in layer_files(d) if f[0].startswith("layer_")] == committed
        s.append(9, make_acts(9))
    r = open_store(d)
    assert r.epochs.tolist() == [0, 1, 5, 9]
    np.testing.assert_array_equal(r.read("dense", [9])[0], make_acts(9)["dense"])
    assert (d / "epochs.jsonl").read_bytes().endswith(b"\n")


def test_foreign_directory_refused(tmp_path, data):
    d = tmp_path / "r"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        create(d, data)
    assert sorted(os.listdir(d)) == [".lock", "notes.txt"]


# ---------------------------------------------------------------------------------------- lock
def test_second_writer_fails_at_once_first_unharmed(written, data):
    d, acts = written
    first = create(d, data)
    with pytest.raises(StoreError, match="this process already has the store open for writing"):
        create(d, data)  # the same process: the message names the fix (close the earlier writer)
    code = ("import sys, numpy as np\nfrom ibtoolkit.store import ActivationStore, StoreError\n"
            "try:\n    ActivationStore.create(sys.argv[1], inputs=np.load(sys.argv[2]), labels=np.load(sys.argv[3]),"
            " layers=[('dense', 6), ('quant/sign', 11), ('out', 3)], binary=[False, True, False])\n"
            "except StoreError as e:\n    print(e); sys.exit(3)\n")
    np.save(d.parent / "x.npy", data[0])
    np.save(d.parent / "y.npy", data[1])
    proc = subprocess.run([sys.executable, "-c", code, str(d), str(d.parent / "x.npy"), str(d.parent / "y.npy")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "another process is writing" in proc.stdout and f"pid {os.getpid()}" in proc.stdout
    first.append(6, make_acts(6))  # the first writer is unharmed
    first.close()
    assert open_store(d).epochs.tolist() == [0, 1, 5, 6]
    with create(d, data) as again:  # the lock is released by close
        again.append(7, make_acts(7))


# ---------------------------------------------------------------------------------------- hostile manifests
def _edit(m, path, value):
    *parents, last = path
    for p in parents:
        m = m[p]
    if value is KeyError:
        del m[last]
    else:
        m[last] = value


@pytest.mark.parametrize("path,value,msg", [
    (["schema_version"], 1, "unsupported schema version 1; this ibtoolkit reads version 2 .*re-record"),
    (["schema_version"], 3, "unsupported schema version 3"),
    (["schema_version"], "1", "unsupported schema version"),
    (["schema_version"], KeyError, "missing the key 'schema_version'"),
    (["format"], "something-else", "not an ibtoolkit store"),
    (["layers"], KeyError, "missing the key 'layers'"),
    (["inputs"], KeyError, "missing the key 'inputs'"),
    (["status"], KeyError, "missing the key 'status'"),
    (["layers", 0, "width"], KeyError, "missing the key 'width'"),
    (["layers", 0, "name"], "../evil", "escape"),
    (["layers", 0, "name"], "/etc/passwd", "absolute"),
    (["layers", 0, "file"], "../evil", "path separators"),
    (["layers", 0, "file"], "/etc", "path separators"),
    (["layers", 0, "file"], "layer_00_a/../../b.bin", "path separators"),
    (["layers", 0, "file"], "layer_00_dense", "path separators"),
    (["layers", 0, "file"], "..", "path separators"),
    (["layers", 1, "width"], "11", "width"),
    (["layers", 1, "binary"], 1, "binary"),
    (["layers", 1, "file"], "layer_00_dense.bin", "repeats"),
    (["layers", 0, "block"], KeyError, "missing the key 'block'"),
    (["layers", 0, "block", "bytes"], 12, "'block' must be"),
    (["layers", 1, "block", "shape"], [N, 11], "'block' must be"),
    (["inputs", "file"], "../inputs.npy", "inputs.file"),
    (["inputs", "dtype"], "O", "numeric dtype"),
    (["epoch_log"], "/tmp/log", "epoch_log"),
    (["status"], "hacked", "status"),
    (["run"], "toy-s0", "'run' must be an object"),
])
def test_bad_manifest_rejected(written, path, value, msg):
    d, _ = written
    m = json.loads((d / "manifest.json").read_text())
    _edit(m, path, value)
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match=msg) as info:
        open_store(d)
    assert str(d / "manifest.json") in str(info.value)


def test_unparseable_or_missing_manifest(tmp_path, written):
    d, _ = written
    (d / "manifest.json").write_text("[1, 2")
    with pytest.raises(StoreError, match="not valid JSON"):
        open_store(d)
    (d / "manifest.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="must be a JSON object"):
        open_store(d)
    (d / "manifest.json").unlink()
    with pytest.raises(StoreError, match="no manifest"):
        open_store(d)
    with pytest.raises(StoreError, match="no such store directory"):
        open_store(tmp_path / "absent")


def test_corrupted_epoch_log_line_rejected(written):
    d, _ = written
    lines = (d / "epochs.jsonl").read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"epoch":1', b'"epoch":2')  # valid JSON, wrong CRC
    (d / "epochs.jsonl").write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError, match="line 2 fails its CRC-32") as info:
        open_store(d)
    assert "epochs.jsonl" in str(info.value)


# ---------------------------------------------------------------------------------------- corrupted arrays
def test_truncated_file_detected_with_path(written, data):
    d, acts = written
    path = d / "layer_00_dense.bin"
    path.write_bytes(path.read_bytes()[:-7])  # cuts into the last block (epoch 5)
    s = open_store(d)  # the manifest is fine; blocks are checked when read
    with pytest.raises(StoreError, match="epoch 5 is committed .*truncated") as info:
        s.read("dense")
    assert str(path) in str(info.value)
    np.testing.assert_array_equal(s.read("dense", [0, 1])[1], acts[1]["dense"])  # other epochs still read
    with pytest.raises(StoreError, match="layer_00_dense.bin"):
        s.verify()
    with pytest.raises(StoreError, match="truncated and the store is damaged"):
        create(d, data)  # a writer refuses to build on it ...
    assert open_store(d).epochs.tolist() == [0, 1, 5] and path.stat().st_size == 3 * 6 * 4 * N - 7  # ... untouched


@pytest.mark.parametrize("target", ["layer_00_dense.bin", "layer_01_quant_sign.bin", "inputs.npy", "labels.npy"])
def test_bit_flip_detected_with_path(written, target):
    d, _ = written
    path = d / target
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x10  # one bit in the data section
    path.write_bytes(bytes(raw))
    s = open_store(d)
    with pytest.raises(StoreError, match="CRC-32 mismatch") as info:
        s.verify()
    assert str(path) in str(info.value)


def test_missing_file_detected_with_path(written):
    d, _ = written
    path = d / "layer_02_out.bin"
    path.unlink()
    with pytest.raises(StoreError) as info:
        open_store(d).read("out")
    assert str(path) in str(info.value)


def test_pickled_array_is_never_loaded(written):
    """A hostile object array (pickle inside inputs.npy) with a matching size and CRC in the manifest is
    refused, not unpickled (layer files are raw blocks, never parsed as .npy)."""
    d, _ = written
    path = d / "inputs.npy"
    np.save(path, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    data = path.read_bytes()
    m = json.loads((d / "manifest.json").read_text())
    m["inputs"].update(bytes=len(data), crc32=_atomic.crc32(data))
    (d / "manifest.json").write_text(json.dumps(m))
    s = open_store(d)
    with pytest.raises(StoreError, match="not a readable .npy array") as info:
        s.inputs
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------- unwritable targets
def test_directory_under_a_regular_file_fails_in_create(tmp_path, data):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the store directory") as info:
        create(blocker / "run", data)
    assert str(blocker / "run") in str(info.value)
    with pytest.raises(StoreError):
        create(blocker, data)  # the target itself is a regular file


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_fails_in_create(tmp_path, data):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            create(d, data)
    finally:
        d.chmod(0o700)


def test_full_disk_fails_in_create_and_append_stays_consistent(tmp_path, data, monkeypatch):
    """ENOSPC (simulated at the write call) fails create before training, and an append mid-epoch
    without committing anything."""
    real = _atomic.write_all

    def full(fd, payload, offset=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic, "write_all", full)
    with pytest.raises(StoreError, match="not writable \\(or full\\)"):
        create(tmp_path / "r", data)
    assert not (tmp_path / "r" / "manifest.json").exists()
    monkeypatch.setattr(_atomic, "write_all", real)

    d = tmp_path / "r"
    s = create(d, data)
    s.append(0, make_acts(0))
    calls = []

    def full_after_one(fd, payload, offset=None):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, payload, offset)

    monkeypatch.setattr(_atomic, "write_all", full_after_one)
    with pytest.raises(StoreError, match="could not commit epoch 1"):
        s.append(1, make_acts(1))
    monkeypatch.setattr(_atomic, "write_all", real)
    assert s.epochs.tolist() == [0]
    assert layer_files(d) == [("layer_00_dense.bin", block_bytes(6, False)),  # the half-written epoch is cut
                              ("layer_01_quant_sign.bin", block_bytes(11, True)),
                              ("layer_02_out.bin", block_bytes(3, False))]
    s.append(1, make_acts(1))
    s.close()
    r = open_store(d)
    assert r.epochs.tolist() == [0, 1]
    np.testing.assert_array_equal(r.read("out")[1], make_acts(1)["out"])


def test_fsync_mode_round_trip(tmp_path, data):
    with create(tmp_path / "r", data, fsync=True) as s:
        s.append(0, make_acts(0))
        s.set_status("complete")
    r = open_store(tmp_path / "r")
    assert r.manifest["durability"] == {"fsync": True} and r.status == "complete"
    np.testing.assert_array_equal(r.read("quant/sign")[0], make_acts(0)["quant/sign"])


def test_symlinked_layer_file_refused(written, data, tmp_path):
    """A hostile store cannot point a layer file elsewhere (a resuming writer would truncate it)."""
    d, _ = written
    victim = tmp_path / "precious.bin"
    victim.write_bytes(b"precious")
    (d / "layer_02_out.bin").rename(tmp_path / "moved")
    (d / "layer_02_out.bin").symlink_to(victim)
    with pytest.raises(StoreError, match="symlink"):
        open_store(d)
    with pytest.raises(StoreError, match="symlink"):
        create(d, data)
    assert victim.read_bytes() == b"precious"


def test_writer_shared_between_threads(tmp_path, data):
    """A background thread appends while another thread adds events, sets the status and reads epochs
    (the callback's writer-thread pattern): every epoch and every event ends up committed."""
    import threading

    d = tmp_path / "r"
    s = create(d, data)
    acts = make_acts(0)
    seen = []

    def appender():
        for e in range(60):
            s.append(e, acts, {"e": float(e)})

    t = threading.Thread(target=appender)
    t.start()
    for i in range(30):
        s.add_event("tick", str(i))
        s.set_status("running")
        seen.append(len(s.epochs))
    t.join()
    assert seen == sorted(seen)
    assert s.epochs.tolist() == list(range(60))
    s.close()
    r = open_store(d)
    assert r.epochs.tolist() == list(range(60)) and [e["message"] for e in r.events] == [str(i) for i in range(30)]
    assert r.metrics[59] == {"e": 59.0}
    assert not list(d.rglob(".*.tmp-*"))


def test_library_code_never_unpickles_or_evaluates():
    """Every np.load in the library passes allow_pickle=False; no pickle, eval, exec or yaml.load."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    loads = 0
    for path in sorted(p for d in ("ibtoolkit", "estimators", "experiments") for p in (root / d).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "cPickle", "dill", "shelve", "marshal")
                               for n in names), f"{path}:{node.lineno} imports a pickle module"
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in ("eval", "exec"), f"{path}:{node.lineno} calls {name}"
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            if name == "load" and owner in ("np", "numpy"):
                loads += 1
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False, \
                    f"{path}:{node.lineno} np.load without allow_pickle=False"
            assert not (name == "load" and owner == "yaml"), f"{path}:{node.lineno} yaml.load"
    assert loads >= 2   # _atomic.read_npy and datasets._read_npz are checked


# ---------------------------------------------------------------------------------------- run metadata
RUN = {"run_id": "toy-mlp-s3", "dataset": "toy", "model": "mlp", "precision": "binary", "variant": "ste_sign",
       "seed": 3, "training": {"epochs": 5, "lr": 1e-3}}


def test_run_metadata_is_kept_on_reopen_and_a_different_run_refused(tmp_path, data):
    d = tmp_path / "run"
    with create(d, data, run=RUN) as s:
        s.append(0, make_acts(0))
        assert s.run == RUN
    assert open_store(d).manifest["run"] == RUN
    with create(d, data) as s:  # run=None keeps the stored run
        s.append(1, make_acts(1))
    with create(d, data, run=dict(RUN)) as s:  # the same run continues
        s.append(2, make_acts(2))
    assert open_store(d).run == RUN and open_store(d).epochs.tolist() == [0, 1, 2]
    other = {**RUN, "seed": 4, "run_id": "toy-mlp-s4"}
    with pytest.raises(StoreError, match="holds the run 'toy-mlp-s3', not 'toy-mlp-s4'"):
        create(d, data, run=other)
    assert open_store(d).run == RUN and open_store(d).epochs.tolist() == [0, 1, 2]  # nothing changed


def test_store_without_run_adopts_one_and_old_stores_read_none(written, data):
    d, _ = written
    assert open_store(d).run is None
    with create(d, data, run=RUN):
        pass
    assert open_store(d).run == RUN


@pytest.mark.parametrize("run, msg", [(["a"], "run must be a dict"), ("toy", "run must be a dict"),
                                      ({"seed": np.arange(2)}, "JSON-serialisable")])
def test_run_metadata_validation(tmp_path, data, run, msg):
    with pytest.raises(ValueError, match=msg):
        create(tmp_path / "bad", data, run=run)
    assert not (tmp_path / "bad" / "manifest.json").exists()


def test_store_crc32_is_zlibs():
    """The store's CRC-32 (zlib-ng's SIMD code) gives zlib.crc32's values, so a numpy-only reader can
    check blocks with the standard library: random buffers of many lengths, arrays and bytes."""
    import zlib

    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 64, 1000, 4096 * 29 * 4 + 3):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        assert _atomic.crc32(data) == zlib.crc32(data) == _atomic.crc32(data.tobytes())
    block = rng.standard_normal((N, 6)).astype(np.float32)
    assert _atomic.crc32(block) == zlib.crc32(block.tobytes())


def test_missing_layer_file_refused_by_a_writer_and_not_recreated(written, data):
    """A layer file deleted under a store with committed epochs is damage: a resuming writer refuses
    (naming it) instead of starting an empty file that the log's offsets would not match."""
    d, _ = written
    (d / "layer_02_out.bin").unlink()
    with pytest.raises(StoreError, match="layer_02_out.bin: cannot open the layer file"):
        create(d, data)
    assert not (d / "layer_02_out.bin").exists()
    assert open_store(d).epochs.tolist() == [0, 1, 5]


@pytest.mark.parametrize("trigger", ["age", "bytes"])
def test_writer_releases_old_blocks_from_the_page_cache_and_reads_stay_intact(tmp_path, data, monkeypatch, trigger):
    """Every ``CACHE_WINDOW`` epochs the writer advises the kernel to drop layer blocks that are old
    enough (``CACHE_AGE``) or, for a fast writer, beyond ``CACHE_BYTES``: each file's advised ranges
    start at byte 0, move forward overlapping the previous one, stay on whole blocks and end, never
    past the committed blocks, at the newest mark old enough (age 0: block 28 of 30 with a window of 4)
    or the newest with any bytes cached after it (block 24); every epoch still reads back exactly."""
    import ibtoolkit.store.cache as cache_module

    monkeypatch.setattr(cache_module, "CACHE_WINDOW", 4)
    monkeypatch.setattr(cache_module, "CACHE_AGE", 0.0 if trigger == "age" else 1e9)
    monkeypatch.setattr(cache_module, "CACHE_BYTES", 0 if trigger == "bytes" else 1 << 40)
    calls = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        calls.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, offset, offset + length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    acts = {e: make_acts(e) for e in range(30)}
    with create(tmp_path / "r", data) as s:
        for e in range(30):
            s.append(e, acts[e])
    r = open_store(tmp_path / "r")
    block = {lay["file"]: lay["block"]["bytes"] for lay in r.manifest["layers"]}
    assert {name for name, *_ in calls} == set(block)
    assert all(advice == os.POSIX_FADV_DONTNEED for *_, advice in calls)
    for name, size in block.items():
        ranges = [(lo, hi) for n, lo, hi, _ in calls if n == name]
        assert ranges[0][0] == 0 and ranges[-1][1] == (28 if trigger == "age" else 24) * size
        assert all(lo % size == 0 and hi % size == 0 for lo, hi in ranges)
        for (lo, hi), (next_lo, next_hi) in zip(ranges, ranges[1:]):
            assert next_lo <= hi < next_hi
    for name, _ in LAYERS:
        np.testing.assert_array_equal(r.read(name), np.stack([acts[e][name] for e in range(30)]))


@pytest.mark.parametrize("dtype", [np.int8, np.float64, np.float16, bool])
def test_binary_layer_in_any_dtype_round_trips_and_is_checked_in_that_dtype(tmp_path, data, dtype):
    """A binary layer given as int8, float64 or float16 ±1 codes reads back as the same ±1 values (the
    float32 path and the others write the same bits).  Values are checked in the given dtype before
    packing, so a float64 that would round to 1.0 in float32 is refused; bool has no -1 and is refused."""
    acts = make_acts(3)
    s = create(tmp_path / "r", data)
    if dtype is bool:
        bad = dict(acts, **{"quant/sign": acts["quant/sign"] > 0})
        with pytest.raises(ValueError, match="other than"):
            s.append(0, bad)
        return
    s.append(0, acts)
    s.append(1, dict(acts, **{"quant/sign": acts["quant/sign"].astype(dtype)}))
    if dtype is np.float64:
        near = acts["quant/sign"].astype(np.float64)
        near[5, 2] = 1.0 + 1e-12
        with pytest.raises(ValueError, match="other than"):
            s.append(2, dict(acts, **{"quant/sign": near}))
    s.close()
    codes = open_store(tmp_path / "r").read("quant/sign")
    np.testing.assert_array_equal(codes[0], acts["quant/sign"])
    np.testing.assert_array_equal(codes[1], acts["quant/sign"])


def test_fingerprint_follows_the_recorded_content(written, data, tmp_path):
    """The fingerprint is the same for every reader of one store, changes when an epoch is committed,
    and differs between two stores of the same content created at different times (``created``) or
    with a different run."""
    d, _ = written
    before = open_store(d).fingerprint
    assert open_store(d).fingerprint == before
    with create(d, data) as s:  # resumed: same content until an epoch is added
        assert s.fingerprint == before
        s.append(9, make_acts(9))
        assert s.fingerprint != before
    assert open_store(d).fingerprint == open_store(d).fingerprint != before
    other = create(tmp_path / "other", data, run={"run_id": "b"})
    other.close()
    assert open_store(tmp_path / "other").fingerprint not in (before, open_store(d).fingerprint)


def test_reader_and_writer_roles(written, data):
    """open_store gives a reader (no lock: a writer can open at the same time); create gives a
    StoreWriter, which is an ActivationStore; both describe themselves."""
    from ibtoolkit.store import StoreWriter

    d, _ = written
    r = open_store(d)
    assert type(r) is ActivationStore and "reader" in repr(r)
    with create(d, data) as s:
        assert isinstance(s, StoreWriter) and isinstance(s, ActivationStore) and "writer" in repr(s)
        r.refresh()
        assert r.epochs.tolist() == s.epochs.tolist() == [0, 1, 5]
    assert "reader" in repr(s)  # closed


def test_background_writer_keeps_order_and_stops_after_a_failure():
    """Writes run in submission order on one thread; after one fails no later write runs, and the
    error is raised once in the caller's thread: by submit (back-pressure waits for it) or by check."""
    import threading

    from ibtoolkit.store import BackgroundWriter

    done, threads, raised = [], set(), []

    def write(i):
        threads.add(threading.get_ident())
        if i == 3:
            raise OSError("disk full at 3")
        done.append(i)

    writer = BackgroundWriter(max_pending=2)
    for i in range(6):
        try:
            writer.submit(write, i)
        except OSError as exc:
            raised.append(str(exc))
    try:
        writer.check(wait=True)
    except OSError as exc:
        raised.append(str(exc))
    writer.shutdown()
    assert raised == ["disk full at 3"]
    assert done == [0, 1, 2] and len(threads) == 1 and threading.get_ident() not in threads
    with pytest.raises(ValueError, match="max_pending"):
        BackgroundWriter(max_pending=0)


# ----------------------------------------------------------------------------- status and weight states
def test_status_running_is_derived_from_the_writer_lock(tmp_path):
    """A live writer reads as running; the same manifest without a lock holder reads as interrupted."""
    x = np.ones((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    w = ActivationStore.create(tmp_path / "s", inputs=x, labels=y, layers=[("a", 2)], binary=[False])
    w.append(0, {"a": x})
    assert w.status == "running" and open_store(tmp_path / "s").status == "running"  # lock held (this process)
    w._lock.release()  # the writer is gone as if killed: the kernel drops its flock, the manifest stays
    reader = open_store(tmp_path / "s")
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["status"] == "running"
    assert reader.status == "interrupted"
    (tmp_path / "s" / ".lock").unlink()
    assert open_store(tmp_path / "s").status == "interrupted"
    w._close_files()


def test_weight_fingerprints_travel_with_commits_and_events(tmp_path):
    x = np.ones((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    with ActivationStore.create(tmp_path / "s", inputs=x, labels=y, layers=[("a", 2)], binary=[False]) as w:
        w.append(0, {"a": x}, weights="crc32:00000001/6")
        w.append(1, {"a": x})  # a commit without a fingerprint (older writers) is allowed
        w.add_event("trained", "fit ended after epoch 3", 3, weights="crc32:00000003/6")
        with pytest.raises(ValueError, match="fingerprint string"):
            w.append(2, {"a": x}, weights=7)
        assert w.epochs.tolist() == [0, 1]  # the refused epoch left nothing
    r = open_store(tmp_path / "s")
    assert r.weight_states == {0: ["crc32:00000001/6"], 3: ["crc32:00000003/6"]}
    r.verify()
    assert [json.loads(line).get("weights") for line in (tmp_path / "s" / "epochs.jsonl").read_text().splitlines()] \
        == ["crc32:00000001/6", None]


def test_the_numpy_only_status_recipe_of_docs_store_md(tmp_path):
    """docs/store.md's reader without ibtoolkit derives the same status as ActivationStore.status."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "store.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", page, re.S) if "def status" in c]
    namespace = {}
    exec(code, namespace)
    x = np.ones((4, 2), np.float32)
    w = ActivationStore.create(tmp_path / "s", inputs=x, labels=np.array([0, 1, 0, 1]), layers=[("a", 2)],
                               binary=[False])
    assert namespace["status"](str(tmp_path / "s")) == open_store(tmp_path / "s").status == "running"
    w._lock.release()  # as if the writer died
    assert namespace["status"](str(tmp_path / "s")) == open_store(tmp_path / "s").status == "interrupted"
    w._close_files()
