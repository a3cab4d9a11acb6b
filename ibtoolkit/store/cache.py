"""Page-cache policy of a store writer: release layer blocks the kernel has already written back.

Layer files are append-only and the writer never reads them back, yet every committed block stays in
the kernel's page cache until memory pressure evicts it, so a long run grows the cache by its whole
size and, once several GB are cached, each commit slows down (the kernel's bookkeeping of the growing
cache).  Every :data:`CACHE_WINDOW` committed epochs :class:`CacheRelease` advises the kernel
(``posix_fadvise(POSIX_FADV_DONTNEED)``) that blocks committed more than :data:`CACHE_AGE` seconds
ago will not be needed soon.  The kernel writes dirty pages back once they are 30 s old, so by then
those pages are clean and the advice only drops them (it does not make the writer start their
write-back); a writer that caches more than :data:`CACHE_BYTES` in that time releases earlier.  A
long run then keeps reusing the same cache pages.  Reading the store afterwards reads those blocks
from disk.  ``benchmarks/bench_store.py`` measures commits with and without the advice.
"""
from __future__ import annotations

import os
import time
from collections import deque

__all__ = ["CacheRelease", "CACHE_WINDOW", "CACHE_AGE", "CACHE_BYTES"]

CACHE_WINDOW = 64  # epochs: how often the writer releases cached layer blocks
CACHE_AGE = 40.0   # seconds a committed block stays cached: the kernel writes dirty pages back after 30 s
CACHE_BYTES = 1 << 30  # ... unless the blocks cached since then exceed this (a very fast writer)


class CacheRelease:
    """The release marks of one writer.  Call :meth:`committed` after each committed epoch."""

    def __init__(self):
        self._marks: deque = deque()  # (monotonic time, committed blocks) every CACHE_WINDOW epochs
        self._released_to = 0  # blocks before this one were advised out of the page cache

    def committed(self, n_blocks: int, files: list[tuple[int, int]]) -> None:
        """``n_blocks`` epochs are now committed in ``files``, ``(descriptor, block bytes)`` per layer."""
        if n_blocks % CACHE_WINDOW == 0:
            self._release(n_blocks, files)

    def _release(self, n: int, files: list[tuple[int, int]]) -> None:
        """Advise out every block older than ``CACHE_AGE`` (or beyond ``CACHE_BYTES``).  The range reaches
        back past the previous call's end, so pages still dirty then go now.  Advice only: errors and
        platforms without ``posix_fadvise`` are ignored."""
        now = time.monotonic()
        self._marks.append((now, n))
        epoch_bytes = sum(size for _, size in files)
        n_blocks = 0
        while self._marks and (now - self._marks[0][0] >= CACHE_AGE
                               or (n - self._marks[0][1]) * epoch_bytes > CACHE_BYTES):
            n_blocks = self._marks.popleft()[1]
        if not hasattr(os, "posix_fadvise") or n_blocks <= self._released_to:
            return
        first = max(0, self._released_to - 4 * CACHE_WINDOW)
        self._released_to = n_blocks
        for fd, size in files:
            try:
                os.posix_fadvise(fd, first * size, (n_blocks - first) * size, os.POSIX_FADV_DONTNEED)
            except OSError:
                return
