"""Metrics, backtest, baselines and the oracle (not built yet)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
