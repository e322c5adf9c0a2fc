"""Per-date correlation kNN graphs, built once and stored for training."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
