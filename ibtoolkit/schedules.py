"""Epoch schedules: which epochs of a run are recorded.

Epoch numbering follows the store: epoch 0 is the network before any update, epoch k the network
after k completed training epochs; a run of ``n_epochs`` ends at epoch ``n_epochs``.

Specs
-----
``"log"``
    ``n_points`` distinct epochs, log-spaced between 1 and ``n_epochs``, plus 0 (Shwartz-Ziv &
    Tishby record about 270 log-spaced epochs of 8000).  Built greedily so that the size is exactly
    ``min(max(n_points, 3), n_epochs + 1)``: from epoch :math:`e_i` with :math:`r` points still to place,
    :math:`e_{i+1} = \\max(e_i + 1, \\operatorname{round}(e_i (n/e_i)^{1/r}))`, capped so the
    remaining points fit; the last point is ``n_epochs``.  Always contains 0, 1 and ``n_epochs``.
``"all"``
    Every epoch 0..n_epochs.
``"every:k"``
    0, k, 2k, ... and always ``n_epochs``.
``"dense:K,<spec>"``
    Every epoch 0..K, then ``<spec>`` ("log", "every:k" or "all") above K.  For ``"dense:K,log"``
    (dense early epochs, where a BNN moves fastest, then log-spaced) the log part starts at K and brings the total to
    ``n_points`` (at least ``n_epochs`` is added).
list / array of ints
    Exactly those epochs (sorted, de-duplicated); each must lie in 0..n_epochs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["epoch_schedule", "DEFAULT_N_POINTS"]

DEFAULT_N_POINTS = 100


def _check_int(value, label: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{label} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{label} must be >= {minimum}, got {value}")
    return int(value)


def _log_points(start: int, stop: int, count: int) -> list[int]:
    """``count`` distinct epochs in (start, stop], geometric from ``start`` (>= 1), ending at ``stop``."""
    count = min(count, stop - start)
    points = []
    prev = start
    for remaining in range(count, 0, -1):
        ratio = (stop / prev) ** (1.0 / remaining)
        nxt = max(prev + 1, int(round(prev * ratio)))
        nxt = min(nxt, stop - (remaining - 1))
        points.append(nxt)
        prev = nxt
    return points


def _parse_every(part: str) -> int:
    try:
        k = int(part.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"schedule {part!r}: expected 'every:k' with a positive integer k") from None
    if k <= 0:
        raise ValueError(f"schedule {part!r}: k must be a positive integer")
    return k


def _simple(spec: str, lo: int, n_epochs: int, n_points: int) -> np.ndarray:
    """Epochs of a simple spec restricted to [lo, n_epochs]; ``lo`` is always included."""
    if spec == "all":
        return np.arange(lo, n_epochs + 1)
    if spec.startswith("every:"):
        k = _parse_every(spec)
        return np.union1d(_every(k, lo, n_epochs), [lo, n_epochs])
    if spec == "log":
        if lo == 0:
            head = [0, 1] if n_epochs >= 1 else [0]
            rest = _log_points(1, n_epochs, n_points - 2) if n_epochs > 1 and n_points > 2 else []
            tail = [n_epochs]
        else:
            head = [lo]
            rest = _log_points(lo, n_epochs, max(n_points - 1, 1)) if n_epochs > lo else []
            tail = [n_epochs]
        return np.unique(np.asarray(head + rest + tail, dtype=np.int64))
    raise ValueError(f"unknown schedule {spec!r}; use 'log', 'all', 'every:k', 'dense:K,log' or a list of epochs")


def _every(k: int, lo: int, n_epochs: int) -> np.ndarray:
    first = -(-lo // k) * k
    return np.arange(first, n_epochs + 1, k)


def epoch_schedule(spec="log", n_epochs: int | None = None, n_points: int = DEFAULT_N_POINTS) -> np.ndarray:
    """Return the sorted, de-duplicated ``int64`` array of epochs to record in 0..n_epochs.

    Parameters
    ----------
    spec : str or sequence of int
        ``"log"``, ``"all"``, ``"every:k"``, ``"dense:K,log"`` (or ``dense:K,every:k`` / ``dense:K,all``),
        or explicit epochs.
    n_epochs : int
        The last epoch of the run (>= 0).
    n_points : int
        Size of a ``"log"`` schedule (total size of ``"dense:K,log"``); at least 2.

    Raises
    ------
    ValueError
        Unknown spec, bad ``k``/``K``, ``n_points < 2``, or explicit epochs outside 0..n_epochs.
    """
    n_epochs = _check_int(n_epochs, "n_epochs", 0)
    n_points = _check_int(n_points, "n_points", 2)
    if isinstance(spec, str):
        spec = spec.strip().replace(" ", "")
        if spec.startswith("dense:"):
            head, _, rest = spec.partition(",")
            try:
                dense = int(head.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"schedule {spec!r}: expected 'dense:K,<spec>' with an integer K") from None
            if dense < 0:
                raise ValueError(f"schedule {spec!r}: K must be >= 0")
            if not rest or rest.startswith("dense:"):
                raise ValueError(f"schedule {spec!r}: expected 'dense:K,log', 'dense:K,every:k' or 'dense:K,all'")
            dense = min(dense, n_epochs)
            later = _simple(rest, dense, n_epochs, max(n_points - dense, 1))
            return np.union1d(np.arange(0, dense + 1), later).astype(np.int64)
        return _simple(spec, 0, n_epochs, n_points).astype(np.int64)
    return _explicit(spec, n_epochs)


def _explicit(spec: Sequence[int], n_epochs: int) -> np.ndarray:
    try:
        arr = np.asarray(spec)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"schedule must be a spec string or a list of epochs, got {spec!r}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"an explicit schedule must be a non-empty 1-D list of epochs, got {spec!r}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"an explicit schedule must hold integer epochs, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"an explicit schedule must hold whole-number epochs, got {spec!r}")
    arr = np.unique(arr.astype(np.int64))
    if arr[0] < 0 or arr[-1] > n_epochs:
        raise ValueError(f"scheduled epochs must lie in 0..{n_epochs} (epoch 0 = before training), got "
                         f"{arr[arr < 0].tolist() + arr[arr > n_epochs].tolist()}")
    return arr
