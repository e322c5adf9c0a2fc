"""Custom Kedro datasets of the project."""

from .graph_store import GraphStoreDataset

__all__ = ["GraphStoreDataset"]
