"""Continuing an activation store: which recorded state a model is at, and what the store says then.

One run per store.  A store records, with each committed epoch, the fingerprint of the model's
weights (:mod:`ibtoolkit.fingerprint`; events ``trained`` and ``retrained_check`` add states between
recorded epochs).  A model continues a store only from one of these states
(:func:`continued_epoch`); from a state older than the last committed epoch the later epochs are
trained again, and the store says so (:func:`retraining_message`, :func:`retrained_check_message`).
:class:`~ibtoolkit.IBCallback` asks these before it opens the store for writing, so a refusal
changes nothing.
"""
from __future__ import annotations

from pathlib import Path

from .store import StoreError, open_store

__all__ = ["continued_epoch", "sibling_directory", "retraining_message", "retrained_check_message"]


def sibling_directory(directory) -> Path:
    """The first free ``<directory>-2``, ``-3``...: where a new run goes beside a store."""
    directory = Path(directory)
    k = 2
    while directory.with_name(f"{directory.name}-{k}").exists():
        k += 1
    return directory.with_name(f"{directory.name}-{k}")


def continued_epoch(directory, fingerprint: str) -> int | None:
    """The epoch of the store in ``directory`` whose recorded weights have ``fingerprint`` (the latest
    such epoch); None when there is no store, it holds no epoch, or it was recorded without
    fingerprints (then it is continued after its last epoch, as before).

    Raises :class:`~ibtoolkit.StoreError` when the store holds weight states and none is
    ``fingerprint``: a fresh model or another run, which a store of one run refuses; the message names
    the store and a free sibling directory for a new run.
    """
    try:
        existing = open_store(directory)
    except StoreError:
        return None  # no store yet, or one that ActivationStore.create reports on
    states = existing.weight_states
    if existing.last_epoch is None or not states:
        return None
    matching = [epoch for epoch, fingerprints in states.items() if fingerprint in fingerprints]
    if matching:
        return max(matching)
    raise StoreError(
        f"{directory}: the model's weights are not those of any epoch this store recorded (its last "
        f"committed epoch is {existing.last_epoch}): it holds another run, and a store holds one run. "
        f"Start a new run in a sibling store, e.g. IBCallback(..., directory={str(sibling_directory(directory))!r}); "
        f"to continue this run, restore the model's weights and optimizer state of its last epoch first. "
        f"Nothing in the store was changed")


def retraining_message(continued: int, last: int) -> str:
    """The ``retrained`` event: the model continues from ``continued`` < ``last``, the last committed epoch."""
    return (f"the model continues from the weights of epoch {continued}: epochs {continued + 1}..{last} are "
            f"trained again (the store keeps their first recording) and recording resumes at epoch {last + 1}")


def retrained_check_message(epoch: int, now: str, recorded: str | None) -> str:
    """The ``retrained_check`` event at the last committed ``epoch``: did retraining reproduce it?"""
    if now == recorded:
        return f"retraining reproduced the recorded weights of epoch {epoch} exactly ({now})"
    return (f"retraining reached other weights at epoch {epoch} ({now}) than the recorded run ({recorded}); "
            f"epochs after {epoch} continue the retrained weights")
