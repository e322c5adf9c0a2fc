"""inference: the latest data scored by the trained model, a ranking for the next trading day."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
