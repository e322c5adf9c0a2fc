"""Cross-sectional prediction metrics (SPEC section 7), per date then summarised.

A date enters a metric only with at least ``min_stocks`` stocks that have both a score and a
realised target; other dates are skipped and counted, never averaged in as zeros.

* ic / rank_ic: mean over dates of the Pearson / Spearman correlation of score and target.
* icir / rank_icir: that mean divided by the standard deviation over dates (not annualised).
* hit_rate: share of (date, stock) pairs where score and target fall on the same side of their
  date's cross-sectional median (directional accuracy of the ranking).

``neutral_scores`` asks how much of a RankIC is a bet on the market or on sectors: a score that
ranks high-beta stocks first scores well in a rising test period and badly in a falling one, and
one that ranks last month's best sectors first scores well while sectors keep trending, whatever
else it knows (over a few months of 20-day returns such bets can outweigh the rest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from atft_kedro.features.targets import beta_spread_within_sectors, sector_beta_residual


@dataclass(frozen=True)
class DailyScores:
    dates: list
    ic: np.ndarray
    rank_ic: np.ndarray
    hits: int
    pairs: int
    skipped_dates: int


def daily_scores(frame: pl.DataFrame, score: str, target: str, min_stocks: int = 20) -> DailyScores:
    """``frame`` has Date, ``score``, ``target``; nulls and NaNs are dropped row by row."""
    f = frame.select("Date", pl.col(score).alias("s"), pl.col(target).alias("y")).drop_nulls().drop_nans()
    per_date = (
        f.group_by("Date")
        .agg(
            pl.len().alias("n"),
            pl.corr("s", "y").alias("ic"),
            pl.corr("s", "y", method="spearman").alias("rank_ic"),
            ((pl.col("s") > pl.col("s").median()) == (pl.col("y") > pl.col("y").median())).sum().alias("hits"),
        )
        .sort("Date")
    )
    all_dates = frame["Date"].n_unique()
    ok = per_date.filter((pl.col("n") >= min_stocks) & pl.col("ic").is_not_nan() & pl.col("rank_ic").is_not_nan())
    return DailyScores(
        dates=ok["Date"].to_list(),
        ic=ok["ic"].to_numpy(),
        rank_ic=ok["rank_ic"].to_numpy(),
        hits=int(ok["hits"].sum()),
        pairs=int(ok["n"].sum()),
        skipped_dates=all_dates - ok.height,
    )


def _ir(x: np.ndarray) -> float:
    return float(x.mean() / x.std(ddof=1)) if len(x) > 1 and x.std(ddof=1) > 0 else float("nan")


def summarise(d: DailyScores) -> dict[str, float]:
    if not len(d.ic):
        return {"ic": float("nan"), "rank_ic": float("nan"), "icir": float("nan"), "rank_icir": float("nan"), "hit_rate": float("nan")}
    return {
        "ic": float(d.ic.mean()),
        "rank_ic": float(d.rank_ic.mean()),
        "icir": _ir(d.ic),
        "rank_icir": _ir(d.rank_ic),
        "hit_rate": d.hits / d.pairs,
    }


def neutral_scores(frame: pl.DataFrame, score: str, target: str, beta: str, sector: str, min_stocks: int = 20) -> dict[str, float]:
    """How much of a score's RankIC survives once the market and the sectors are out of the targets.

    -> ``beta_exposure``: mean over dates of the Spearman correlation of ``score`` with ``beta`` (each
    stock's beta to the market, known at t); ``rank_ic_beta_neutral``: mean Spearman correlation of
    ``score`` with the target less its part explained by beta that date (least squares with an
    intercept); ``rank_ic_sector_beta_neutral``: the same with the date's ``sector`` means also taken
    out (least squares on sector dummies and beta, done as beta's slope within sectors). Dates with
    fewer than ``min_stocks`` complete rows, or no beta spread within sectors (one beta for all, for
    one), are skipped, as in ``daily_scores``."""
    f = frame.select("Date", pl.col(score).alias("s"), pl.col(target).alias("y"), pl.col(beta).alias("b"), pl.col(sector).alias("g"))
    f = f.drop_nulls().drop_nans().filter(pl.col("b").is_finite() & pl.col("y").is_finite()).with_columns(one_group=pl.lit(0))
    f = f.with_columns(
        neutral=sector_beta_residual("y", "b", "one_group"),  # the whole date as one "sector": beta alone
        sector_neutral=sector_beta_residual("y", "b", "g"),
        var_b_in=beta_spread_within_sectors(pl.col("b"), "g"),
    )
    per_date = f.group_by("Date").agg(
        pl.len().alias("n"),
        pl.col("var_b_in").first(),
        pl.corr("s", "b", method="spearman").alias("beta_exposure"),
        pl.corr("s", "neutral", method="spearman").alias("rank_ic_beta_neutral"),
        pl.corr("s", "sector_neutral", method="spearman").alias("rank_ic_sector_beta_neutral"),
    )
    keys = ("beta_exposure", "rank_ic_beta_neutral", "rank_ic_sector_beta_neutral")
    ok = per_date.filter((pl.col("n") >= min_stocks) & (pl.col("var_b_in") > 0), *[pl.col(k).is_not_nan() for k in keys])
    return {k: float(ok[k].mean()) if ok.height else float("nan") for k in keys}
