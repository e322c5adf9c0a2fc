"""Atomic writes: a save that is interrupted leaves the previous artifact (or none) as it was.

A save writes beside its target first, to a hidden temporary named after the target, this host and
the writing process (``.{name}.{host}-{pid}.*.tmp``, or ``.new`` for a folder). A save killed
before it ends (SIGKILL, a lost machine) cannot remove its temporary; the next save of the same
target removes those whose process is gone, so a full-size graph store killed again and again
does not fill the disk with hidden copies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (``.{name}.{host}-{pid}.*.tmp``); on success it
    replaces ``path``, on failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_left_over(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(root: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``root``; on success it replaces ``root``.

    Two renames do the swap (the previous folder aside to ``.{name}.old``, the new one in), and the
    previous folder is removed only once the new one is in place. A kill between the renames leaves
    the previous folder at ``.{name}.old``; ``restore_interrupted`` (called by every reader, and by
    the next save) puts it back."""
    root.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(root)
    remove_left_over(root)
    old = _aside(root)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(root), suffix=".new", dir=root.parent))
    try:
        yield tmp
        if root.exists():
            root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def restore_interrupted(root: Path) -> None:
    """Put back the previous folder of a save that was killed between its two renames."""
    old = _aside(root)
    if old.exists():
        if root.exists():  # the new folder made it in; the old one is left over
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(root)


def remove_left_over(path: Path) -> None:
    """Remove the temporaries that saves of ``path`` killed before they ended left beside it: those
    this host's processes wrote that are no longer running. Another host's, a running process's
    (another save under way) and any other file are left as they are."""
    if os.name != "posix":  # os.kill(pid, 0) asks whether a process runs only on POSIX
        return
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?P<host>.+)-(?P<pid>\d+)\.[^.]+\.(?:tmp|new)")
    host = socket.gethostname()
    for entry in path.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        if found is None or found["host"] != host or _running(int(found["pid"])):
            continue
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file()) if entry.is_dir() else entry.stat().st_size
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        log.info("Removed %s (%.1f MB), left by a save of %s that was killed before it ended", entry, size / 1e6, path.name)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _prefix(path: Path) -> str:
    """A temporary's name up to its random part: the target's name, this host and this process."""
    return f".{path.name}.{socket.gethostname()}-{os.getpid()}."


def _aside(root: Path) -> Path:
    return root.parent / f".{root.name}.old"
