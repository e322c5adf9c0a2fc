"""Custom Kedro datasets of the project."""

from .files import AtomicJSONDataset, AtomicLazyPolarsDataset, AtomicPolarsDataset, AtomicTextDataset
from .graph_store import GraphStoreDataset
from .torch_datasets import CheckpointStoreDataset, TorchCheckpointDataset, TrainingArraysDataset

__all__ = ["AtomicJSONDataset", "AtomicLazyPolarsDataset", "AtomicPolarsDataset", "AtomicTextDataset", "CheckpointStoreDataset", "GraphStoreDataset",
           "TorchCheckpointDataset", "TrainingArraysDataset"]  # fmt: skip
