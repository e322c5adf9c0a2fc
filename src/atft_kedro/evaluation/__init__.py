"""Metrics, the long-short backtest, baselines and plots."""
