"""Pictures of the evaluation: cumulative long-short returns, rolling IC, quantile returns."""

from __future__ import annotations

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from atft_kedro.evaluation.backtest import BacktestResult


def plot_cumulative(results: dict[str, BacktestResult], horizon: str):
    fig = Figure(figsize=(10, 5), constrained_layout=True)
    ax = fig.subplots()
    for name, r in results.items():
        if len(r.net):
            ax.plot(r.dates, np.cumprod(1 + r.net) - 1, label=name, lw=2.2 if name == "model" else 1.2)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_title(f"Cumulative long-short return after costs ({horizon}, test split)")
    ax.legend()
    return fig


def plot_rolling_ic(daily: dict[str, tuple[list, np.ndarray]], horizon: str, window: int = 20):
    fig = Figure(figsize=(10, 5), constrained_layout=True)
    ax = fig.subplots()
    for name, (dates, ric) in daily.items():
        if len(ric) >= window:
            rolled = np.convolve(ric, np.ones(window) / window, mode="valid")
            ax.plot(dates[window - 1 :], rolled, label=name, lw=2.2 if name == "model" else 1.2)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_title(f"{window}-day rolling RankIC ({horizon}, test split)")
    ax.legend()
    return fig


def plot_quantile_returns(frame: pl.DataFrame, scores: list[str], target: str, n_quantiles: int = 5):
    """Mean realised target per score quintile of each date, per scorer."""
    fig = Figure(figsize=(10, 5), constrained_layout=True)
    ax = fig.subplots()
    width = 0.8 / len(scores)
    for i, s in enumerate(scores):
        q = (
            frame.select("Date", s, target).drop_nulls().drop_nans()
            .with_columns(((pl.col(s).rank("ordinal").over("Date") - 1) * n_quantiles // pl.len().over("Date")).alias("q"))
            .group_by("q").agg(pl.col(target).mean()).sort("q")
        )  # fmt: skip
        ax.bar(q["q"].to_numpy() + i * width, q[target].to_numpy() * 1e4, width=width, label=s)
    ax.set_xticks(np.arange(n_quantiles) + 0.4 - width / 2, [f"Q{i + 1}" for i in range(n_quantiles)])
    ax.set_ylabel(f"mean {target} (bp)")
    ax.set_title("Realised return by score quintile (Q5 = highest score)")
    ax.legend()
    return fig
