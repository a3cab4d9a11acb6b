"""Weight fingerprints: which state of a model a committed epoch was recorded from.

The fingerprint of a model is the CRC-32 of the bytes of all its weights (``model.weights``: kernels,
biases, BatchNorm's moving statistics; as float32, C order, in that order) and their number of values,
written ``"crc32:<8 hex digits>/<n>"``.  Numpy alone recomputes it::

    crc = 0
    for w in model.get_weights():
        crc = zlib.crc32(np.ascontiguousarray(w, np.float32), crc)

Two models with bitwise equal weights have equal fingerprints; a model that was built anew, trained
differently or restored from another epoch almost surely has another one (two different weight
vectors share a CRC-32 with probability 2^-32).  Optimizer state is not part of it.

:class:`~ibtoolkit.IBCallback` records the fingerprint with every committed epoch (and of the final
state of a ``fit`` that ended between recorded epochs), and refuses to continue a store with a model
whose weights are none of those states.  Read variable by variable (:class:`WeightFingerprint`: one
``numpy()`` per variable, nothing to trace) it costs about as much as extracting every tap of a
small net, so at a recorded epoch the callback takes the weights as one more output of its
extraction graph (:func:`ibtoolkit.extractor.make_extractor` with ``weights=``) and hashes that copy
(:func:`fingerprint_values`): the same bytes, hence the same fingerprint, nearly free
(``benchmarks/bench_callback.py``, rows ``weight_fingerprint_*``).
"""
from __future__ import annotations

import zlib

import numpy as np

__all__ = ["WeightFingerprint", "weight_fingerprint", "fingerprint_values"]


def fingerprint_values(values: np.ndarray) -> str:
    """The fingerprint of weights already concatenated into one flat float32 array (the extractor's
    copy, :attr:`ibtoolkit.extractor.Extractor.weights`): the same string as :class:`WeightFingerprint`."""
    flat = np.ascontiguousarray(values, np.float32)
    return f"crc32:{zlib.crc32(flat):08x}/{flat.size}"


class WeightFingerprint:
    """``fingerprint()`` -> the current fingerprint of ``model``'s weights (see the module docstring)."""

    def __init__(self, model):
        self._variables = list(model.weights)
        self.n_values = int(sum(int(np.prod(v.shape)) for v in self._variables))

    def __call__(self) -> str:
        crc = 0
        for v in self._variables:
            value = v.numpy()
            if value.dtype != np.float32:
                value = value.astype(np.float32)
            crc = zlib.crc32(np.ascontiguousarray(value), crc)
        return f"crc32:{crc:08x}/{self.n_values}"


def weight_fingerprint(model) -> str:
    """The fingerprint of ``model``'s weights now."""
    return WeightFingerprint(model)()
