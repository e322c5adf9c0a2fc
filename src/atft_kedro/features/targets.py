"""Forward-return targets: target_{h}d = close[t+h] / close[t] - 1 on the common trading calendar."""

from __future__ import annotations

import polars as pl

from atft_kedro.data.schema import HORIZONS


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


def beta_spread_within_sectors(beta: pl.Expr, sector: str) -> pl.Expr:
    """Per date, the sum of squares of ``beta`` about its sector means: 0 on a date whose betas are
    all alike within sectors, where beta tells no stocks apart (before day 60, say)."""
    return ((beta - beta.mean().over("Date", sector)) ** 2).sum().over("Date")


def sector_beta_residual(y: str, beta: str, sector: str) -> pl.Expr:
    """``y`` less its date's sector mean and less its part explained by ``beta`` within sectors
    (least squares of ``y`` on sector dummies and beta, per date): what is left once the market
    and the sectors are out. Rows need ``Date``; a null or NaN in ``y`` or ``beta`` gives null; on a
    date whose betas are all alike within sectors only the sector means come out."""
    ok = pl.col(y).is_finite() & pl.col(beta).is_finite()  # null or NaN in either: the row sits out
    yv, bv = pl.when(ok).then(pl.col(y)), pl.when(ok).then(pl.col(beta))
    y_in, b_in = yv - yv.mean().over("Date", sector), bv - bv.mean().over("Date", sector)
    spread = beta_spread_within_sectors(bv, sector)  # 0: no beta to tell stocks apart (yet), sectors only
    return y_in - pl.when(spread > 0).then((y_in * b_in).sum().over("Date") / spread).otherwise(0.0) * b_in


def neutralise_targets(frame: pl.DataFrame, horizons=HORIZONS, beta: str = "beta_60d", sector: str = "Sector33Code") -> pl.DataFrame:
    """``frame`` with every target_{h}d replaced by ``sector_beta_residual`` of it: a training
    target that holds no bet on the market or on sectors (the labels only: features untouched)."""
    return frame.with_columns(sector_beta_residual(t, beta, sector).alias(t) for t in target_columns(horizons))
