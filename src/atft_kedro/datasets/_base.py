"""What the project's datasets share: a path, a description, atomic writes (a save that is
interrupted leaves the previous artifact as it was)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset


@contextlib.contextmanager
def atomic_folder(root: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``root``; on success it replaces ``root``."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        yield tmp
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


class PathDataset(AbstractDataset):
    """A dataset at one ``filepath``, with optional ``metadata`` (for kedro-viz and the like)."""

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
