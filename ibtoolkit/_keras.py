"""Keras-2 mode for Larq.

Larq 0.14 builds on Keras 2 (``tf-keras``).  TensorFlow 2.16+ loads Keras 3 unless the
environment variable ``TF_USE_LEGACY_KERAS=1`` is set *before TensorFlow is first imported*.
:func:`ensure_legacy_keras` sets it and fails loudly when it is already too late.
"""
from __future__ import annotations

import os
import sys

_LEGACY_FLAG = "TF_USE_LEGACY_KERAS"


def _keras3_loaded() -> bool:
    keras = sys.modules.get("keras")
    if keras is None:
        return False
    version = getattr(keras, "__version__", None)
    if version is None:  # partially initialised module: look at its package metadata
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("keras")
        except Exception:  # noqa: BLE001 - metadata missing means we cannot tell
            return False
    major = str(version).split(".")[0]
    return major.isdigit() and int(major) >= 3


def ensure_legacy_keras() -> None:
    """Select Keras 2 (tf-keras) for TensorFlow, or raise if Keras 3 is already in use.

    Raises
    ------
    ImportError
        If TensorFlow was imported earlier in this process without ``TF_USE_LEGACY_KERAS=1``
        and has already bound ``tf.keras`` to Keras 3.
    """
    already = os.environ.get(_LEGACY_FLAG)
    if already not in (None, "1", "true", "True"):
        raise ImportError(_message(f"the environment sets {_LEGACY_FLAG}={already!r}"))
    os.environ[_LEGACY_FLAG] = "1"
    if _keras3_loaded():
        raise ImportError(_message("Keras 3 was imported before ibtoolkit"))


def _message(what: str) -> str:
    return (
        f"ibtoolkit needs Keras 2 (tf-keras) for Larq, but {what}, so tf.keras is Keras 3 in this "
        f"process. Fix: import ibtoolkit before tensorflow/keras, or set the environment variable "
        f"{_LEGACY_FLAG}=1 before starting Python (e.g. `export {_LEGACY_FLAG}=1`)."
    )
