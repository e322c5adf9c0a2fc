"""What the project's datasets share: a path and a description (atomic writes: ``atft_kedro.atomic``)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kedro.io import AbstractDataset


class PathDataset(AbstractDataset):
    """A dataset at one ``filepath``, with optional ``metadata`` (for kedro-viz and the like)."""

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
