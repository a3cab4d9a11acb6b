"""Tests for experiments.datasets: exact Tishby figures, digits, IDX/npz readers and the search order."""
import gzip
import struct

import numpy as np
import pytest

from experiments import datasets as ds


# ------------------------------------------------------------------------------------------------ tishby
def test_tishby_exact_figures():
    d = ds.load("tishby")
    assert d.x.shape == (4096, 12) and d.y.shape == (4096,)
    assert set(np.unique(d.x)) == {0, 1}
    assert int(d.y.sum()) == 2118
    p = d.y.mean()
    assert round(p, 5) == 0.51709
    h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    assert round(h, 5) == 0.99916
    assert d.info["n_classes"] == 2 and d.info["n"] == 4096


def test_tishby_counting_order_msb_first():
    x = ds.load("tishby").x
    weights = 2 ** np.arange(11, -1, -1)
    np.testing.assert_array_equal(x @ weights, np.arange(4096))
    np.testing.assert_array_equal(x[1], [0] * 11 + [1])  # column 11 is the least significant bit
    np.testing.assert_array_equal(x[2048], [1] + [0] * 11)


def test_tishby_labels_follow_rule_by_brute_force():
    """Recompute every label with a per-pattern loop straight from the issue's wording."""
    x, y = ds.tishby_dataset()
    u = ds.TISHBY_VERTICES
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-12)  # vertices of a unit icosahedron
    for i in range(0, 4096, 7):
        bits = [(i >> (11 - j)) & 1 for j in range(12)]
        k = sum(bits)
        v = sum(b * u[j] for j, b in enumerate(bits)) if k else np.zeros(3)
        d2 = float(v @ v)
        want = 0 if k <= 4 else 1 if k >= 8 else int(d2 > {5: 7.0, 6: 2.5, 7: 0.5}[k])
        assert y[i] == want, i


def test_split_seeded_disjoint_and_covering():
    d = ds.load("tishby")
    tr, te = ds.train_test_split(d, 0.2, seed=3)
    assert len(te) == 819 and len(tr) == 4096 - 819
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(4096))
    tr2, te2 = ds.train_test_split(d, 0.2, seed=3)
    np.testing.assert_array_equal(te, te2)
    _, te3 = ds.train_test_split(d, 0.2, seed=4)
    assert not np.array_equal(np.sort(te), np.sort(te3))
    train, test = ds.split(d, 0.2, seed=3)
    np.testing.assert_array_equal(test.x, d.x[te])
    np.testing.assert_array_equal(train.y, d.y[tr])
    assert test.info["part"] == "test" and test.info["n"] == 819


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1e-6])
def test_split_rejects_bad_fraction(frac):
    with pytest.raises(ValueError, match="test_fraction"):
        ds.train_test_split(100, frac)


def test_preprocessing_explicit():
    x = ds.load("tishby").x
    pm = ds.to_pm1(x)
    assert pm.dtype == np.float32 and set(np.unique(pm)) == {-1.0, 1.0}
    np.testing.assert_array_equal(pm == 1, x == 1)
    with pytest.raises(ValueError, match="only 0 and 1"):
        ds.to_pm1(np.array([0, 2]))
    img = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    np.testing.assert_allclose(ds.scale(ds.flatten(img)), [[0, 1, 0.2, 0.4]], atol=1e-7)
    with pytest.raises(ValueError, match=r"\[0, 16"):
        ds.scale(np.array([17.0]), 16)


def test_digits_real_and_scaled():
    d = ds.load("digits")
    assert d.x.shape == (1797, 64) and d.y.shape == (1797,)
    assert d.x.min() == 0.0 and d.x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(d.y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    from sklearn.datasets import load_digits
    np.testing.assert_allclose(d.x * 16, load_digits().data, atol=1e-5)


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match="available: digits, fashion_mnist, mnist, tishby"):
        ds.load("cifar")
    assert ds.available_datasets() == ["digits", "fashion_mnist", "mnist", "tishby"]
    with pytest.raises(ValueError, match="does not accept"):
        ds.load("tishby", limit=3)


# ------------------------------------------------------------------------------------- IDX / npz files
def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return head + arr.tobytes()


def _fake(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.uint8)


def _write_idx_dir(directory, gz, n_train=6, n_test=4, seed=0):
    directory.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = _fake(n_train, seed), _fake(n_test, seed + 1)
    files = {"train-images-idx3-ubyte": xtr, "train-labels-idx1-ubyte": ytr,
             "t10k-images-idx3-ubyte": xte, "t10k-labels-idx1-ubyte": yte}
    for stem, arr in files.items():
        data = _idx_bytes(arr)
        if gz:
            with gzip.open(directory / (stem + ".gz"), "wb") as fh:
                fh.write(data)
        else:
            (directory / stem).write_bytes(data)
    return (xtr, ytr), (xte, yte)


def _write_npz(path, n_train=5, n_test=3, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = _fake(n_train, seed), _fake(n_test, seed + 1)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return (xtr, ytr), (xte, yte)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty HOME, no IBTOOLKIT_DATA, no Debian directory and a download that fails like being offline."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("IBTOOLKIT_DATA", raising=False)
    monkeypatch.setattr(ds, "_DEBIAN_FASHION_DIR", str(tmp_path / "debian" / "fashion-mnist"))

    def offline(name, parts):
        raise OSError("network unreachable")

    monkeypatch.setattr(ds, "_download", offline)
    return tmp_path


def test_read_idx_plain_and_gz_and_header_checks(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(arr))
    with gzip.open(tmp_path / "a.gz", "wb") as fh:
        fh.write(_idx_bytes(arr))
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "a.gz"), arr)
    # big-endian multi-byte type (0x0C = int32)
    i32 = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "b").write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + i32.tobytes())
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "b"), [1, -2, 70000])
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="magic"):
        ds.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(arr)[:-1])
    with pytest.raises(ValueError, match="needs? 24|need 24"):
        ds.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [False, True])
def test_path_directory_idx(isolated, gz):
    (xtr, ytr), (xte, yte) = _write_idx_dir(isolated / "user", gz)
    d = ds.load("mnist", path=isolated / "user")
    np.testing.assert_array_equal(d.x, xte)
    np.testing.assert_array_equal(d.y, yte)
    assert d.y.dtype == np.int64 and d.info["split"] == "test" and d.info["source"].startswith("path=")
    tr = ds.load("mnist", path=isolated / "user", split="train")
    np.testing.assert_array_equal(tr.x, xtr)
    both = ds.load("mnist", path=isolated / "user", split="all", limit=8)
    np.testing.assert_array_equal(both.x, np.concatenate([xtr, xte])[:8])
    assert both.info["sizes"] == {"train": 6, "test": 4} and both.info["n"] == 8


def test_path_npz_file(isolated):
    (xtr, ytr), (xte, yte) = _write_npz(isolated / "mine.npz")
    d = ds.load("fashion_mnist", path=isolated / "mine.npz", split="all")
    np.testing.assert_array_equal(d.x, np.concatenate([xtr, xte]))
    np.testing.assert_array_equal(d.y, np.concatenate([ytr, yte]))


def test_env_dir_then_keras_cache_order(isolated, monkeypatch):
    home = isolated / "home"
    _, (xk, _) = _write_npz(home / ".keras" / "datasets" / "mnist.npz", seed=10)
    d = ds.load("mnist")
    np.testing.assert_array_equal(d.x, xk)
    assert d.info["source"].startswith("Keras cache")
    # $IBTOOLKIT_DATA has priority over the Keras cache; the IDX sub-directory is found.
    data = isolated / "data"
    _, (xe, _) = _write_idx_dir(data / "mnist", gz=True, seed=20)
    monkeypatch.setenv("IBTOOLKIT_DATA", str(data))
    d = ds.load("mnist")
    np.testing.assert_array_equal(d.x, xe)
    assert d.info["source"].startswith("$IBTOOLKIT_DATA")
    # path= has priority over both.
    _, (xp, _) = _write_npz(isolated / "p.npz", seed=30)
    np.testing.assert_array_equal(ds.load("mnist", path=isolated / "p.npz").x, xp)
    # the user's Keras-cache file is left untouched (never handed to the Keras loader)
    assert (home / ".keras" / "datasets" / "mnist.npz").is_file()


def test_fashion_keras_cache_and_debian_dir(isolated):
    deb = isolated / "debian" / "fashion-mnist"
    _, (xd, yd) = _write_idx_dir(deb, gz=True, seed=40)
    d = ds.load("fashion_mnist")
    np.testing.assert_array_equal(d.x, xd)
    assert "Debian" in d.info["source"]
    _, (xk, _) = _write_idx_dir(isolated / "home" / ".keras" / "datasets" / "fashion-mnist", gz=True, seed=50)
    np.testing.assert_array_equal(ds.load("fashion-mnist").x, xk)  # Keras cache before Debian


def test_env_npz_names_for_fashion(isolated, monkeypatch):
    data = isolated / "data"
    _, (x, _) = _write_npz(data / "fashion-mnist.npz", seed=60)
    monkeypatch.setenv("IBTOOLKIT_DATA", str(data))
    np.testing.assert_array_equal(ds.load("fashion_mnist").x, x)
    with pytest.raises(ds.DatasetUnavailable):  # an MNIST request does not pick up Fashion-MNIST files
        ds.load("mnist")


def test_offline_missing_error_says_where(isolated):
    with pytest.raises(ds.DatasetUnavailable) as info:
        ds.load("fashion_mnist")
    msg = str(info.value)
    assert "network unreachable" in msg and "IBTOOLKIT_DATA" in msg and "t10k-images-idx3-ubyte" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(ds.DatasetUnavailable, match="download=False"):
        ds.load("mnist", download=False)


def test_download_used_only_when_nothing_local(isolated, monkeypatch):
    calls = []
    fake = _fake(3, 70)

    def fake_download(name, parts):
        calls.append((name, parts))
        return {p: fake for p in parts}

    monkeypatch.setattr(ds, "_download", fake_download)
    d = ds.load("mnist", split="train")
    assert calls == [("mnist", ("train",))] and d.info["source"].startswith("Keras download")
    np.testing.assert_array_equal(d.x, fake[0])
    _write_npz(isolated / "home" / ".keras" / "datasets" / "mnist.npz")
    ds.load("mnist")
    assert len(calls) == 1


def test_incomplete_or_bad_user_files(isolated):
    user = isolated / "user"
    _write_idx_dir(user, gz=False)
    (user / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ds.DatasetUnavailable, match="without the four IDX files"):
        ds.load("mnist", path=user)
    with pytest.raises(ds.DatasetUnavailable, match="does not exist"):
        ds.load("mnist", path=isolated / "nope.npz")
    np.savez(isolated / "partial.npz", x_test=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing arrays"):
        ds.load("mnist", path=isolated / "partial.npz")
    with pytest.raises(ValueError, match="split"):
        ds.load("mnist", path=isolated / "partial.npz", split="val")
    with pytest.raises(ValueError, match="limit"):
        ds.load("mnist", path=isolated / "partial.npz", limit=0)


def test_ensure_available_finds_local_files_downloads_once_or_says_where(isolated, monkeypatch):
    assert ds.ensure_available("tishby") == ds.ensure_available("digits") == "built in"
    with pytest.raises(ds.DatasetUnavailable, match=r"mnist was not found locally and the Keras download "
                                                    r"failed \(OSError: network unreachable\)\. Put mnist.npz"):
        ds.ensure_available("mnist")
    with pytest.raises(ds.DatasetUnavailable, match="download=False"):
        ds.ensure_available("mnist", download=False)
    with pytest.raises(ValueError, match="does not accept options"):
        ds.ensure_available("mnist", colour=True)
    with pytest.raises(ValueError, match="does not accept options"):
        ds.ensure_available("tishby", limit=3)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        ds.ensure_available("cifar")

    calls = []
    monkeypatch.setattr(ds, "_download", lambda name, parts: calls.append((name, parts)) or {})
    assert ds.ensure_available("fashion-mnist") == "Keras download (tf.keras.datasets.fashion_mnist)"
    assert calls == [("fashion_mnist", ("train", "test"))]
    _write_npz(isolated / "home" / ".keras" / "datasets" / "mnist.npz")
    assert ds.ensure_available("mnist", split="train").startswith("Keras cache: ")
    assert len(calls) == 1                                   # a local file: no download


def test_pickled_npz_is_refused_naming_the_file_and_never_unpickled(isolated):
    evil = isolated / "evil.npz"
    sentinel = isolated / "unpickled"

    class Boom:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))   # would create the sentinel file if ever unpickled

    np.savez(evil, x_train=np.array([Boom(), Boom()], dtype=object), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="are not plain numeric arrays") as info:
        ds.load("mnist", path=evil, split="train")
    assert str(evil) in str(info.value) and not sentinel.exists()
