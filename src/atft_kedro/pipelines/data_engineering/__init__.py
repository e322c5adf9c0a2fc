"""Raw tables -> validated panel -> point-in-time features, targets, normalisation, splits."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
