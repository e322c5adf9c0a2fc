"""Atomic writes: a save that is interrupted leaves the previous artifact (or none) as it was."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (``.{name}.*.tmp``); on success it replaces
    ``path``, on failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    old = _aside(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".new", dir=root.parent))
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


def _aside(root: Path) -> Path:
    return root.parent / f".{root.name}.old"
