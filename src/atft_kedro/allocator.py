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
_acting = None  # the C library while an outermost block keeps freed memory (it acted), else None


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
    ``RELEASE``. Yields whether it acted. Nested blocks act once, at the outermost. Within it,
    ``hand_back_freed`` gives what is free back at a point of the block's choosing."""
    global _depth, _acting
    libc = glibc() if on and _depth == 0 and not user_settings() else None
    if libc is not None and not all([libc.mallopt(param, ctypes.c_int(value)) == 1 for param, value in KEEP.items()]):
        _release(libc, "glibc's refusal")
        log.debug("glibc refused the malloc settings; the released ones stand")
        libc = None
    _depth += 1
    if libc is not None:
        _acting = libc
    try:
        yield libc is not None
    finally:
        _depth -= 1
        if libc is not None:
            _acting = None
            _release(libc)


def hand_back_freed(when: str = "") -> bool:
    """Inside a block that keeps freed memory (``freed_memory_kept`` acted): what is free now goes
    back to the system (``malloc_trim``), the thresholds stay. Training calls it at each epoch's end.
    Freed memory is kept so that the next step's tensors of the same sizes reuse it, but from
    epoch to epoch the heap holds more that no later tensor fits: at the full size 6.2 GB of the
    6.9 GB of the process's own memory at phase 0's end was free (docs/performance.md). Handed back
    once an epoch, it costs the next epoch's first steps their page faults. ``when``: the point the
    log line names. -> whether it acted."""
    if _acting is None:
        return False
    _trim(_acting, when)
    return True


def _release(libc, when: str = "the block's end") -> None:
    """What is free back to the system, and the thresholds at ``RELEASE``. How much of the
    process's own memory that was (what the block's freed tensors held at its end) is logged: at
    INFO from ``SAID`` up, where it says what a large run's own memory held."""
    _trim(libc, when)
    for param, value in RELEASE.items():
        libc.mallopt(param, ctypes.c_int(value))


def _trim(libc, when: str) -> None:
    """``malloc_trim``, and how much of the process's own memory it gave back logged (at INFO from ``SAID`` up)."""
    before = memory()
    libc.malloc_trim(ctypes.c_size_t(0))
    after = memory()
    if before is not None and after is not None:
        log.log(logging.INFO if before.anon - after.anon >= SAID else logging.DEBUG,
                "freed memory handed back to the system%s: %.2f GB (the process's own memory %.2f GB -> %.2f GB)",
                f" at {when}" if when else "", (before.anon - after.anon) / 1e9, before.anon / 1e9, after.anon / 1e9)  # fmt: skip


SAID = 100 << 20  # the least freed memory handed back that is logged at INFO
