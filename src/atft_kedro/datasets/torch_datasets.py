"""Datasets for training artifacts: dense training arrays, the checkpoint store, a model file."""

from __future__ import annotations

from pathlib import Path

from atft_kedro.atomic import atomic_folder, restore_interrupted
from atft_kedro.datasets._base import PathDataset
from atft_kedro.training.checkpoints import CheckpointStore, atomic_torch_save, read_checkpoint
from atft_kedro.training.data import TrainingArrays


class TrainingArraysDataset(PathDataset):
    """Dense [date, stock, feature] arrays as a folder of .npy files, loaded as memory maps.

    .. code-block:: yaml

        training_arrays:
          type: atft_kedro.datasets.TrainingArraysDataset
          filepath: data/05_model_input/training_arrays
    """

    def _exists(self) -> bool:
        restore_interrupted(Path(self._filepath))
        return (Path(self._filepath) / "feature_names.txt").exists()

    def load(self) -> TrainingArrays:
        restore_interrupted(Path(self._filepath))
        return TrainingArrays.open(str(self._filepath))

    def save(self, data: TrainingArrays) -> None:
        with atomic_folder(Path(self._filepath)) as tmp:
            data.save(tmp)


class CheckpointStoreDataset(PathDataset):
    """A handle on the folder of every phase's best and last checkpoints. Training writes into it
    during the run (every epoch), which is what lets an interrupted run resume.

    .. code-block:: yaml

        checkpoints:
          type: atft_kedro.datasets.CheckpointStoreDataset
          filepath: data/06_models/checkpoints
    """

    def load(self) -> CheckpointStore:
        return CheckpointStore(str(self._filepath))

    def save(self, data: None) -> None:
        raise NotImplementedError("checkpoints are written by the training loop through the store it loads")


class TorchCheckpointDataset(PathDataset):
    """One checkpoint dict (tensors and plain values), saved atomically, loaded with weights_only.

    .. code-block:: yaml

        model:
          type: atft_kedro.datasets.TorchCheckpointDataset
          filepath: data/06_models/model.pt
    """

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def load(self) -> dict:
        return read_checkpoint(Path(self._filepath), "training writes it at its end: kedro run --pipelines training")

    def save(self, data: dict) -> None:
        atomic_torch_save(data, Path(self._filepath))
