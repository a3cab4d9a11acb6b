"""Live estimates in Keras' ``logs``: which keys, a rectangular history, refusals before training.

:class:`~ibtoolkit.IBCallback` with ``estimators=[...]`` adds ``ib/<layer>/ixt`` and
``ib/<layer>/ity`` (first estimator) or ``ib/<estimator>/<layer>/...`` (the others) to ``logs`` at
recorded epochs.  Every such key gets a value at every epoch, NaN where the epoch was not recorded
or the estimate failed (:func:`fill_history`), so ``History``, ``CSVLogger`` and ``TensorBoard``,
which share Keras' ``logs``, see a rectangular table.  An estimator that cannot measure a layer by
its declaration (``exact`` on a continuous layer) is refused once, before training
(:func:`refuse_unmeasurable`).
"""
from __future__ import annotations

__all__ = ["log_prefix", "history_keys", "fill_history", "refuse_unmeasurable"]


def log_prefix(index: int, name: str) -> str:
    """``ib`` for the first live estimator, ``ib/<name>`` for the others."""
    return "ib" if index == 0 else f"ib/{name}"


def history_keys(estimator_names, taps) -> list[str]:
    """Every ``ib/...`` key of the live estimates, in the order they are added to ``logs``."""
    return [f"{log_prefix(i, name)}/{tap.name}/{axis}"
            for i, name in enumerate(estimator_names) for tap in taps for axis in ("ixt", "ity")]


def fill_history(logs, keys) -> None:
    """NaN for every live key an epoch did not estimate (``logs`` is Keras' dict, shared by callbacks)."""
    if logs is not None:
        for key in keys:
            logs.setdefault(key, float("nan"))


def refuse_unmeasurable(estimators, taps) -> None:
    """``ValueError`` naming every (estimator, layer) that the estimator refuses by the layer's
    declaration (:meth:`ibtoolkit.Estimator.refusal`): asked once, before anything is written."""
    reasons = [reason for est in estimators for tap in taps if (reason := est.refusal(tap.name, tap.discrete))]
    if reasons:
        raise ValueError("IBCallback: " + "; ".join(reasons) + " (or drop the estimator from estimators=[...])")
