"""Cross-sectional prediction metrics (SPEC section 7), per date then summarised.

A date enters a metric only with at least ``min_stocks`` stocks that have both a score and a
realised target; other dates are skipped and counted, never averaged in as zeros.

* ic / rank_ic: mean over dates of the Pearson / Spearman correlation of score and target.
* icir / rank_icir: that mean divided by the standard deviation over dates (not annualised).
* hit_rate: share of (date, stock) pairs where score and target fall on the same side of their
  date's cross-sectional median (directional accuracy of the ranking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


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
