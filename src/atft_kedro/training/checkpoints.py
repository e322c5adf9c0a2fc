"""Checkpoints of every phase, saved atomically and loaded with ``weights_only=True``.

Layout under the store's root: ``phase{N}/best.pt`` and ``phase{N}/last.pt``. A checkpoint is a dict
of tensors and plain Python values: model and optimizer state, epoch, best metric, history, the
torch RNG state, the run's config and the feature manifest.
"""

from __future__ import annotations

from pathlib import Path

import torch

from atft_kedro.atomic import atomic_file

KINDS = ("best", "last")


def atomic_torch_save(state: dict, path: Path) -> None:
    """Write to a temporary file and rename: a kill mid-save leaves the old file intact."""
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


class CheckpointStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, phase: int, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
        return self.root / f"phase{phase}" / f"{kind}.pt"

    def exists(self, phase: int, kind: str) -> bool:
        return self.path(phase, kind).exists()

    def save(self, phase: int, kind: str, state: dict) -> Path:
        path = self.path(phase, kind)
        atomic_torch_save(state, path)
        return path

    def load(self, phase: int, kind: str) -> dict:
        path = self.path(phase, kind)
        if not path.exists():
            raise FileNotFoundError(path)
        return torch.load(path, map_location="cpu", weights_only=True)

    def phases(self) -> list[int]:
        return sorted(int(p.name[5:]) for p in self.root.glob("phase*") if (p / "best.pt").exists())
