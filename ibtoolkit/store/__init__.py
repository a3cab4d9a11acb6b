"""Crash-safe activation store: the per-epoch layer representations of one training run, on disk.

One concept per module:

- :mod:`~ibtoolkit.store.format`: the on-disk format (file names, schema, validation of manifests and
  log lines, record checksums, content fingerprint); pure functions.
- :mod:`~ibtoolkit.store.reader`: :class:`ActivationStore` and :func:`open_store` (read-only, no lock).
- :mod:`~ibtoolkit.store.writer`: :class:`StoreWriter`, the commit protocol of one epoch, events, status.
- :mod:`~ibtoolkit.store.cache`: the writer's page-cache policy.
- :mod:`~ibtoolkit.store.background`: :class:`BackgroundWriter`, store writes on one background thread.
- :mod:`~ibtoolkit.store.create`: :meth:`ActivationStore.create`, laying out or resuming a store.

A store is a directory that numpy and json alone can read (no pickle): ``manifest.json``,
``epochs.jsonl`` (one checksummed line per committed epoch), ``inputs.npy``, ``labels.npy`` and one
append-only ``layer_NN_<slug>.bin`` per layer holding one fixed-size block per epoch.  A process
killed at any instant leaves either a whole epoch or none of it.
"""
from .format import (DTYPES, FORMAT, SCHEMA_VERSION, STATUSES, StoreError, block_spec, fingerprint, layer_file,
                     run_metadata)
from .reader import ActivationStore, open_store
from .writer import StoreWriter
from .background import BackgroundWriter

__all__ = ["StoreError", "ActivationStore", "StoreWriter", "BackgroundWriter", "open_store", "run_metadata",
           "fingerprint", "layer_file", "block_spec", "SCHEMA_VERSION", "FORMAT", "DTYPES", "STATUSES"]
