"""Datasets for the information-plane experiments: raw inputs, integer labels, seeded splits.

``load(name, **options)`` returns a :class:`Dataset` holding the *raw* inputs ``.x`` and integer
labels ``.y``.  Preprocessing is a separate, explicit step (:func:`to_pm1` for BNN inputs,
:func:`flatten` and :func:`scale` for images), so a run's config states exactly what the network saw.

Datasets
--------
``tishby``
    The 12-bit dataset of Shwartz-Ziv & Tishby (2017, "Opening the black box of deep neural networks
    via information"), regenerated exactly: all 4096 patterns of 12 bits in counting order, column 0
    the most significant bit.  Bit i sits on vertex u_i of a regular icosahedron; with k = sum_i x_i
    and D^2 = ||sum_i x_i u_i||^2, y = 0 for k <= 4, y = 1 for k >= 8, and for k = 5, 6, 7 the label
    is 1 iff D^2 > 7.0, 2.5, 0.5.  This gives 2118 ones, P(y=1) = 0.51709, H(Y) = 0.99916 bits.
    ``.x`` is the 4096 x 12 {0,1} matrix (uint8).
``digits``
    scikit-learn's bundled 8x8 digits (1797 real images, offline), flattened to 64 features and
    scaled from 0..16 to [0, 1] (float32).
``mnist``, ``fashion_mnist``
    The standard files, read locally with numpy only (IDX, optionally gzipped, or the Keras ``.npz``).
    ``.x`` is uint8 of shape (N, 28, 28).  Options: ``split="test"`` (default: the 10 000 test
    images, the set Saxe et al. (2018) compute MI on), ``"train"`` or ``"all"`` (train then test);
    ``limit=n`` keeps the first n images; ``path=`` a file or directory to read first;
    ``download=True`` allows the Keras download when nothing local exists.

Search order for MNIST / Fashion-MNIST (the first location holding a complete set wins):

1. ``path=`` given by the caller: a ``.npz`` file or a directory with the four IDX files;
2. ``$IBTOOLKIT_DATA``: ``<dir>/mnist.npz`` or ``<dir>/mnist/`` (Fashion-MNIST:
   ``<dir>/fashion_mnist.npz``, ``<dir>/fashion-mnist.npz``, ``<dir>/fashion-mnist/``,
   ``<dir>/fashion_mnist/``);
3. the Keras cache ``~/.keras/datasets/`` (``mnist.npz``; ``fashion-mnist/*.gz``);
4. Fashion-MNIST only: ``/usr/share/datasets/fashion-mnist/``, where Debian's
   ``dataset-fashion-mnist`` package installs the four ``*-ubyte.gz`` files;
5. the Keras download (``tf.keras.datasets.<name>.load_data``), tried only when no local file
   exists.  A user's file is never handed to the Keras loader (it deletes files whose hash differs).

The four IDX files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ending in ``.gz`` (the
``train-images.idx3-ubyte`` spelling is accepted too).  IDX format (LeCun et al.): a big-endian
magic number ``0x00 0x00 <type> <ndim>`` (type 0x08 = unsigned byte), then ``ndim`` big-endian
uint32 sizes, then the data in C order.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ibtoolkit.codes import to_pm1  # the one {0, 1} -> ±1 rule (x -> 2x - 1), re-exported here

__all__ = ["Dataset", "DatasetUnavailable", "load", "ensure_available", "available_datasets", "train_test_split", "split",
           "to_pm1", "flatten", "scale", "read_idx", "tishby_dataset", "TISHBY_VERTICES"]

# Icosahedron vertices of Shwartz-Ziv & Tishby's 12-bit task (bit i -> row i).
_A, _B = 0.5257311121191336, 0.8506508083520399
TISHBY_VERTICES = np.array([
    (0, -_A, -_B), (-_A, -_B, 0), (0, -_A, _B), (_A, -_B, 0), (-_B, 0, _A), (0, _A, -_B),
    (-_A, _B, 0), (_A, _B, 0), (_B, 0, _A), (0, _A, _B), (_B, 0, -_A), (-_B, 0, -_A),
], dtype=np.float64)
# D^2 thresholds for k = 5, 6, 7 set bits.
_TISHBY_THRESHOLDS = {5: 7.0, 6: 2.5, 7: 0.5}

_SPLITS = ("test", "train", "all")
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_STEMS = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetUnavailable(ValueError):
    """A dataset's files were found nowhere and could not be downloaded; the message says where to put them."""


@dataclass
class Dataset:
    """Raw inputs ``x`` (N, ...), integer labels ``y`` (N,), a ``name`` and an ``info`` dict.

    ``info`` holds at least ``source`` (where the data came from), ``n`` (number of samples),
    ``shape`` (shape of one input), ``n_classes`` and, for split datasets, ``split``.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.y = np.asarray(self.y)
        if self.y.ndim != 1 or not np.issubdtype(self.y.dtype, np.integer):
            raise ValueError(f"Dataset {self.name!r}: y must be a 1-D integer array, got shape "
                             f"{self.y.shape} dtype {self.y.dtype}")
        if len(self.x) != len(self.y):
            raise ValueError(f"Dataset {self.name!r}: x has {len(self.x)} samples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices, part: str | None = None) -> "Dataset":
        """A new :class:`Dataset` with the rows ``indices`` (in that order); ``part`` is noted in ``info``."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.dtype == bool):
            raise ValueError(f"indices must be a 1-D integer or boolean array, got shape {idx.shape} "
                             f"dtype {idx.dtype}")
        info = dict(self.info)
        info["n"] = int(np.arange(len(self))[idx].size)
        if part is not None:
            info["part"] = part
        return Dataset(self.x[idx], self.y[idx], self.name, info)


# ----------------------------------------------------------------------------------------- preprocessing
def flatten(x) -> np.ndarray:
    """Reshape (N, ...) inputs to (N, prod(...)), e.g. 28x28 images to 784 features."""
    arr = np.asarray(x)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(f"flatten: x must have at least one sample, got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def scale(x, max_value: float = 255.0) -> np.ndarray:
    """Scale inputs from [0, max_value] to [0, 1] as float32 (255 for 8-bit images, 16 for digits)."""
    if not np.isfinite(max_value) or max_value <= 0:
        raise ValueError(f"scale: max_value must be a positive finite number, got {max_value!r}")
    arr = np.asarray(x, dtype=np.float32)
    if arr.size and (arr.min() < 0 or arr.max() > max_value):
        raise ValueError(f"scale: x must lie in [0, {max_value}], found values in "
                         f"[{float(arr.min())}, {float(arr.max())}]")
    return arr / np.float32(max_value)


# ----------------------------------------------------------------------------------------------- splits
def train_test_split(dataset, test_fraction: float = 0.2, seed: int = 0):
    """Seeded shuffled split: ``(train_indices, test_indices)`` of ``dataset`` (or of ``range(n)`` for an int).

    A permutation ``perm = default_rng(seed).permutation(n)`` is cut at ``n_test =
    round(test_fraction * n)``: ``test = perm[:n_test]``, ``train = perm[n_test:]``.  The two index
    arrays are disjoint and cover every sample; the same seed always gives the same split (the 80/20
    split of Shwartz-Ziv & Tishby by default).  Use :func:`split` to get datasets instead.
    """
    if isinstance(dataset, (int, np.integer)):
        n = int(dataset)
    elif hasattr(dataset, "__len__"):
        n = len(dataset)
    else:
        raise ValueError(f"dataset must be a Dataset, an array or a sample count, got {type(dataset).__name__}")
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s): need at least 2")
    if not (0.0 < float(test_fraction) < 1.0):
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    n_test = int(round(float(test_fraction) * n))
    if n_test == 0 or n_test == n:
        raise ValueError(f"test_fraction={test_fraction} of {n} samples leaves an empty train or test part")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def split(dataset: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Seeded shuffled split into ``(train, test)`` datasets; see :func:`train_test_split`."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"split expects a Dataset, got {type(dataset).__name__}")
    train_idx, test_idx = train_test_split(dataset, test_fraction, seed)
    return dataset.subset(train_idx, "train"), dataset.subset(test_idx, "test")


# ---------------------------------------------------------------------------------------------- tishby
def tishby_dataset() -> tuple[np.ndarray, np.ndarray]:
    """The 12-bit task: x (4096, 12) uint8 in counting order (column 0 = MSB) and y (4096,) int64."""
    codes = np.arange(4096)
    x = ((codes[:, None] >> (11 - np.arange(12))) & 1).astype(np.uint8)
    k = x.sum(axis=1)
    d2 = np.square(x @ TISHBY_VERTICES).sum(axis=1)
    threshold = np.select([k == kk for kk in _TISHBY_THRESHOLDS], list(_TISHBY_THRESHOLDS.values()), np.inf)
    y = np.where(k >= 8, 1, np.where(k <= 4, 0, d2 > threshold)).astype(np.int64)
    return x, y


def _load_tishby() -> Dataset:
    x, y = tishby_dataset()
    return Dataset(x, y, "tishby", {"source": "regenerated (Shwartz-Ziv & Tishby 2017, icosahedron rule)",
                                    "n": 4096, "shape": (12,), "n_classes": 2, "split": "all"})


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    return Dataset(x, y, "digits", {"source": "sklearn.datasets.load_digits (bundled, UCI 8x8 digits)",
                                    "n": int(len(y)), "shape": (64,), "n_classes": 10, "split": "all",
                                    "scaled": "x / 16 in [0, 1]"})


# --------------------------------------------------------------------------------------------- IDX / npz
def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzipped, detected by its magic bytes) into a numpy array.

    Raises ``ValueError`` naming the file when the magic number, type code or size is wrong.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic number must start with two zero bytes)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{type_code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: IDX header truncated or has no dimensions")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims)) * dtype.itemsize
    body = len(raw) - 4 - 4 * ndim
    if body != expected:
        raise ValueError(f"{path}: IDX body has {body} bytes but dimensions {dims} need {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, part: str, kind: str) -> Path | None:
    for stem in _IDX_STEMS[(part, kind)]:
        for suffix in ("", ".gz"):
            candidate = directory / (stem + suffix)
            if candidate.is_file():
                return candidate
    return None


def _idx_set(directory: Path) -> dict | None:
    """The four IDX files in ``directory`` as {(part, kind): path}, or None unless all four exist."""
    if not directory.is_dir():
        return None
    found = {key: _find_idx(directory, *key) for key in _IDX_STEMS}
    return found if all(found.values()) else None


def _read_idx_set(files: dict, parts) -> dict:
    out = {}
    for part in parts:
        x = read_idx(files[(part, "images")])
        y = read_idx(files[(part, "labels")])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{files[(part, 'images')]} and {files[(part, 'labels')]}: expected images "
                             f"(N, rows, cols) and labels (N,), got {x.shape} and {y.shape}")
        out[part] = (x, y)
    return out


def _read_npz(path: Path, parts) -> dict:
    out = {}
    with np.load(path, allow_pickle=False) as f:
        missing = [k for part in parts for k in (f"x_{part}", f"y_{part}") if k not in f.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing} (a Keras-style .npz holds x_train, y_train, "
                             f"x_test, y_test)")
        for part in parts:
            try:
                x, y = f[f"x_{part}"], f[f"y_{part}"]
            except ValueError as exc:  # object arrays: refused, never unpickled
                raise ValueError(f"{path}: x_{part}/y_{part} are not plain numeric arrays ({exc}); "
                                 f"save them with numpy as uint8 images and integer labels") from exc
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"{path}: expected x_{part} (N, rows, cols) and y_{part} (N,), got "
                                 f"{x.shape} and {y.shape}")
            out[part] = (x, y)
    return out


_NPZ_NAMES = {"mnist": ("mnist.npz",), "fashion_mnist": ("fashion_mnist.npz", "fashion-mnist.npz")}
_SUBDIRS = {"mnist": ("mnist",), "fashion_mnist": ("fashion-mnist", "fashion_mnist")}


def _candidates(name: str, path) -> list[tuple[str, Path]]:
    """Locations to look at, in order, as (label, file-or-directory)."""
    out: list[tuple[str, Path]] = []
    if path is not None:
        out.append(("path=", Path(path).expanduser()))
    env = os.environ.get("IBTOOLKIT_DATA")
    if env:
        root = Path(env).expanduser()
        out += [("$IBTOOLKIT_DATA", root / n) for n in _NPZ_NAMES[name]]
        out += [("$IBTOOLKIT_DATA", root / d) for d in _SUBDIRS[name]]
    keras = Path.home() / ".keras" / "datasets"
    if name == "mnist":
        out.append(("Keras cache", keras / "mnist.npz"))
    else:
        out.append(("Keras cache", keras / "fashion-mnist"))
        out.append(("Debian dataset-fashion-mnist", Path(_DEBIAN_FASHION_DIR)))
    return out


def _locate(name: str, path) -> tuple[str, Path, str] | None:
    """First location holding a complete set: (label, path, 'npz' | 'idx'), or None."""
    for label, loc in _candidates(name, path):
        if loc.is_file():
            return label, loc, "npz"
        if _idx_set(loc) is not None:
            return label, loc, "idx"
        if label == "path=":
            what = "does not exist" if not loc.exists() else (
                "is a directory without the four IDX files" if loc.is_dir() else "is not a file")
            raise DatasetUnavailable(f"{name}: path={str(loc)!r} {what}. {_where_to_put(name)}")
    return None


def _where_to_put(name: str) -> str:
    npz = " or ".join(_NPZ_NAMES[name])
    sub = _SUBDIRS[name][0]
    idx = ", ".join(s[0] + "[.gz]" for s in _IDX_STEMS.values())
    text = (f"Put {npz} (Keras format: x_train, y_train, x_test, y_test) or a directory {sub}/ with the IDX "
            f"files {idx} into $IBTOOLKIT_DATA (or pass path=...); the Keras cache ~/.keras/datasets/ is "
            f"searched too")
    if name == "fashion_mnist":
        text += f"; `apt-get install dataset-fashion-mnist` installs them under {_DEBIAN_FASHION_DIR}/"
    return text + "."


def _keras_download(name: str, parts) -> dict:
    """Download through ``tf.keras.datasets`` (only called when no local file exists)."""
    import ibtoolkit  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    import tensorflow as tf

    loader = {"mnist": tf.keras.datasets.mnist, "fashion_mnist": tf.keras.datasets.fashion_mnist}[name]
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    both = {"train": (x_train, y_train), "test": (x_test, y_test)}
    return {p: both[p] for p in parts}


# Replaced in tests to simulate being offline.
_download: Callable[[str, tuple], dict] = _keras_download


def _load_idx_dataset(name: str, split: str = "test", limit: int | None = None, path=None,
                      download: bool = True) -> Dataset:
    if split not in _SPLITS:
        raise ValueError(f"{name}: split must be one of {list(_SPLITS)}, got {split!r}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"{name}: limit must be a positive integer, got {limit!r}")
    parts = ("train", "test") if split == "all" else (split,)
    found = _locate(name, path)
    if found is not None:
        label, loc, kind = found
        arrays = _read_npz(loc, parts) if kind == "npz" else _read_idx_set(_idx_set(loc), parts)
        source = f"{label}: {loc}"
    elif download:
        try:
            arrays = _download(name, parts)
        except Exception as exc:  # noqa: BLE001 - re-raised with the fix
            raise DatasetUnavailable(f"{name} was not found locally and the Keras download failed "
                                     f"({type(exc).__name__}: {exc}). {_where_to_put(name)}") from exc
        source = f"Keras download (tf.keras.datasets.{name})"
    else:
        raise DatasetUnavailable(f"{name} was not found locally and download=False. {_where_to_put(name)}")
    x = np.concatenate([arrays[p][0] for p in parts])
    y = np.concatenate([arrays[p][1] for p in parts]).astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    info = {"source": source, "n": int(len(y)), "shape": tuple(x.shape[1:]), "n_classes": 10, "split": split,
            "sizes": {p: int(len(arrays[p][1])) for p in parts}}
    return Dataset(x, y, name, info)


# -------------------------------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[..., Dataset]] = {
    "tishby": _load_tishby,
    "digits": _load_digits,
    "mnist": lambda **kw: _load_idx_dataset("mnist", **kw),
    "fashion_mnist": lambda **kw: _load_idx_dataset("fashion_mnist", **kw),
}


def available_datasets() -> list[str]:
    """Names :func:`load` accepts."""
    return sorted(_LOADERS)


def _dataset_key(name) -> str:
    """The registry key of a dataset name (case and ``-``/``_`` insensitive); ``ValueError`` if unknown."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return key


def ensure_available(name: str, **options) -> str:
    """Make sure :func:`load` can get ``name`` without reading it; returns where it will come from.

    For ``mnist``/``fashion_mnist``: the first complete local set in the search order, else (with
    ``download`` allowed) the Keras download is made now, so a missing file is found before any
    training starts rather than in the middle of a sweep.  Raises :class:`DatasetUnavailable` (a
    ``ValueError``) saying where to put the files, or ``ValueError`` for an unknown name or option.
    """
    key = _dataset_key(name)
    if key not in _NPZ_NAMES:
        if options:
            raise ValueError(f"dataset {key!r} does not accept options {sorted(options)}")
        return "built in"
    unknown = sorted(set(options) - {"split", "limit", "path", "download"})
    if unknown:
        raise ValueError(f"dataset {key!r} does not accept options {unknown}")
    found = _locate(key, options.get("path"))
    if found is not None:
        return f"{found[0]}: {found[1]}"
    if not options.get("download", True):
        raise DatasetUnavailable(f"{key} was not found locally and download=False. {_where_to_put(key)}")
    try:
        _download(key, ("train", "test"))
    except Exception as exc:  # noqa: BLE001 - re-raised with the fix
        raise DatasetUnavailable(f"{key} was not found locally and the Keras download failed "
                                 f"({type(exc).__name__}: {exc}). {_where_to_put(key)}") from exc
    return f"Keras download (tf.keras.datasets.{key})"


def load(name: str, **options) -> Dataset:
    """Load dataset ``name`` (see the module docstring) with its raw inputs and integer labels.

    ``tishby`` and ``digits`` take no options; ``mnist`` / ``fashion_mnist`` take ``split``,
    ``limit``, ``path`` and ``download``.  Unknown names or options raise ``ValueError``.
    """
    key = _dataset_key(name)
    try:
        return _LOADERS[key](**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "positional argument" in str(exc):
            raise ValueError(f"dataset {key!r} does not accept options {sorted(options)}: {exc}") from exc
        raise
