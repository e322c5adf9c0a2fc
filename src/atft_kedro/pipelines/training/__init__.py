"""Training phases 0-3 of ATFT-GAT-FAN (not built yet)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
