"""Metrics, a cost-aware long-short backtest, baselines and the oracle, with plots."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
