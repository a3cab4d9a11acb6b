"""Store writes on one background thread: in order, bounded, and errors raised where they can be handled.

:class:`BackgroundWriter` runs store mutations (``append``, ``add_event``, ``set_status``) on one
writer thread so that commits overlap the next training epoch.  At most ``max_pending`` writes are
in flight (back-pressure: the caller waits for the oldest beyond that).  After a write fails, no
later write runs, so the store stays exactly as the failure left it (no epoch after a missing one,
no status ``complete``), and the error is re-raised in the caller's thread by :meth:`check`.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

__all__ = ["BackgroundWriter"]


class BackgroundWriter:
    """One writer thread for store mutations; see the module docstring."""

    def __init__(self, max_pending: int = 2, name: str = "ibtoolkit-store-writer"):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        self.max_pending = int(max_pending)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque = deque()
        self._failed = False

    def submit(self, fn, *args, **kwargs) -> None:
        """Queue ``fn(*args, **kwargs)`` after every earlier write; waits while ``max_pending`` are in flight
        (and re-raises the error of the one it waited for)."""
        if len(self._pending) >= self.max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._after_good_writes, fn, *args, **kwargs))

    def _after_good_writes(self, fn, *args, **kwargs) -> None:
        """Writer thread: run ``fn`` unless an earlier write failed."""
        if self._failed:
            return
        try:
            fn(*args, **kwargs)
        except BaseException:
            self._failed = True
            raise

    def check(self, wait: bool = False) -> None:
        """Re-raise the first error of a finished write (with ``wait``: of any write, after waiting for all)."""
        while self._pending and (wait or self._pending[0].done()):
            self._pending.popleft().result()

    def shutdown(self) -> None:
        """Wait for every queued write and stop the thread.  Errors are not raised here: call
        :meth:`check` first where they matter."""
        self._pool.shutdown(wait=True)
        self._pending.clear()
