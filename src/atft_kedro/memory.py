"""The process's memory as Linux reports it (``/proc/self/status``)."""

from __future__ import annotations

from typing import NamedTuple


class Memory(NamedTuple):
    """The process's resident memory now (``VmRSS``), its high-water mark (``VmHWM``) and the part
    of the resident memory now that is its own (``VmRSS`` less ``RssFile``: not pages of mapped
    files, which the system can drop and read again), in bytes."""

    rss: int
    peak: int
    anon: int


def memory() -> Memory | None:
    """The process's ``Memory`` from ``/proc/self/status``; None where it does not say (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            found = {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in f) if k in ("VmRSS", "VmHWM", "RssFile")}
        return Memory(found["VmRSS"], found["VmHWM"], found["VmRSS"] - found["RssFile"])
    except (OSError, KeyError, ValueError, IndexError):
        return None
