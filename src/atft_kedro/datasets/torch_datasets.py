"""Datasets for training artifacts: dense training arrays, the checkpoint store, a model file."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io import AbstractDataset

from atft_kedro.datasets._atomic import atomic_folder
from atft_kedro.training.checkpoints import CheckpointStore, atomic_torch_save
from atft_kedro.training.data import TrainingArrays


class TrainingArraysDataset(AbstractDataset[TrainingArrays, TrainingArrays]):
    """Dense [date, stock, feature] arrays as a folder of .npy files, loaded as memory maps.

    .. code-block:: yaml

        training_arrays:
          type: atft_kedro.datasets.TrainingArraysDataset
          filepath: data/05_model_input/training_arrays
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return (Path(self._filepath) / "feature_names.txt").exists()

    def load(self) -> TrainingArrays:
        return TrainingArrays.open(str(self._filepath))

    def save(self, data: TrainingArrays) -> None:
        with atomic_folder(Path(self._filepath)) as tmp:
            data.save(tmp)


class CheckpointStoreDataset(AbstractDataset[CheckpointStore, None]):
    """A handle on the folder of every phase's best and last checkpoints. Training writes into it
    during the run (every epoch), which is what lets an interrupted run resume.

    .. code-block:: yaml

        checkpoints:
          type: atft_kedro.datasets.CheckpointStoreDataset
          filepath: data/06_models/checkpoints
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def load(self) -> CheckpointStore:
        return CheckpointStore(str(self._filepath))

    def save(self, data: None) -> None:
        raise NotImplementedError("checkpoints are written by the training loop through the store it loads")


class TorchCheckpointDataset(AbstractDataset[dict, dict]):
    """One checkpoint dict (tensors and plain values), saved atomically, loaded with weights_only.

    .. code-block:: yaml

        model:
          type: atft_kedro.datasets.TorchCheckpointDataset
          filepath: data/06_models/model.pt
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def load(self) -> dict:
        return torch.load(Path(self._filepath), map_location="cpu", weights_only=True)

    def save(self, data: dict) -> None:
        atomic_torch_save(data, Path(self._filepath))
