"""glibc's allocator told to keep the memory torch frees, for a block of work.

A tensor larger than glibc's mmap threshold (at most 32 MiB, however it adapts) is mapped from the
system when it is made and unmapped when it is freed, so the next step's tensor of the same size
faults every one of its pages in again. At the full size (3,800 stocks a date) a whole ``kedro run``
took 815 million page faults and 29 minutes of system time (docs/performance.md). With
the threshold at 1 GiB those tensors come from the heap, and with the trim threshold at 2 GiB the
heap keeps what they free for the next step: the same bits, fewer faults, more resident memory.

No block of code here knows which allocator it runs under, so this only acts where it can tell:
glibc on Linux, and no malloc settings of the user's own (``MALLOC_*_`` variables,
``GLIBC_TUNABLES``, or another allocator in ``LD_PRELOAD``), which it leaves as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

from atft_kedro.memory import memory

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
KEEP = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: (1 << 31) - 1}  # mallopt takes an int: 2 GiB - 1 is its most
# what glibc's own settings come to once its adaptive threshold has risen to its ceiling (its
# defaults on 64 bits); a block's end puts these back, as mallopt has no way to restore adaptation
RELEASE = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20}
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES", "LD_PRELOAD")

_depth = 0  # blocks entered and not left: only the outermost sets and restores


@functools.cache
def glibc():
    """The C library as a ``ctypes`` handle where it is glibc on Linux, else None (looked up once a
    process: every training phase and forecast asks)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def user_settings() -> list[str]:
    """The environment variables by which the user chose malloc's behaviour (or another allocator)."""
    return [name for name in USER_SETTINGS if os.environ.get(name)]


@contextmanager
def freed_memory_kept(on: bool = True) -> Iterator[bool]:
    """Run the block with glibc keeping freed memory for reuse (``KEEP``); on the way out, an error
    included, what is free goes back to the system (``malloc_trim``) and the thresholds are set to
    ``RELEASE``. Yields whether it acted. Nested blocks act once, at the outermost."""
    global _depth
    libc = glibc() if on and _depth == 0 and not user_settings() else None
    if libc is not None and not all([libc.mallopt(param, ctypes.c_int(value)) == 1 for param, value in KEEP.items()]):
        _release(libc)
        log.debug("glibc refused the malloc settings; the released ones stand")
        libc = None
    _depth += 1
    try:
        yield libc is not None
    finally:
        _depth -= 1
        if libc is not None:
            _release(libc)


def _release(libc) -> None:
    """What is free back to the system, and the thresholds at ``RELEASE``. How much of the
    process's own memory that was (what the block's freed tensors held at its end) is logged: at
    INFO from ``SAID`` up, where it says what a large run's own memory held."""
    before = memory()
    libc.malloc_trim(ctypes.c_size_t(0))
    after = memory()
    for param, value in RELEASE.items():
        libc.mallopt(param, ctypes.c_int(value))
    if before is not None and after is not None:
        log.log(logging.INFO if before.anon - after.anon >= SAID else logging.DEBUG,
                "freed memory handed back to the system: %.2f GB (the process's own memory %.2f GB -> %.2f GB)",
                (before.anon - after.anon) / 1e9, before.anon / 1e9, after.anon / 1e9)  # fmt: skip


SAID = 100 << 20  # the least freed memory handed back that is logged at INFO
