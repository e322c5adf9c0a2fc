"""Training phases 0-3 of ATFT-GAT-FAN with checkpoints and resume."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
