"""Forward-return targets: target_{h}d = close[t+h] / close[t] - 1 on the common trading calendar."""

from __future__ import annotations

import polars as pl

HORIZONS = (1, 5, 10, 20)  # trading days ahead: the one list every part of the project uses


def target_columns(horizons=HORIZONS) -> list[str]:
    return [f"target_{h}d" for h in horizons]


def build_targets(panel: pl.DataFrame, horizons=HORIZONS) -> pl.DataFrame:
    """Date, Code, target_{h}d. Null where the future is unknown: past the end of the data or of the
    stock's listing, or where the stock did not trade on day t or on day t+h."""
    close = pl.when(pl.col("traded")).then(pl.col("close"))
    return (
        panel.sort("Code", "Date")
        .select("Date", "Code", *[(close.shift(-h) / close - 1).over("Code").alias(f"target_{h}d") for h in horizons])
    )
