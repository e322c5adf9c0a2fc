"""Custom Kedro datasets of the project."""

from .graph_store import GraphStoreDataset
from .torch_datasets import CheckpointStoreDataset, TorchCheckpointDataset, TrainingArraysDataset

__all__ = ["CheckpointStoreDataset", "GraphStoreDataset", "TorchCheckpointDataset", "TrainingArraysDataset"]
