"""ATFT-GAT-FAN as plain torch modules: no file access, no training loop."""

from .atft import ATFTGATFAN, ModelConfig

__all__ = ["ATFTGATFAN", "ModelConfig"]
