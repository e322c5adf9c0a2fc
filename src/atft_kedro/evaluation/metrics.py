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

NEUTRAL_KEYS = ("beta_exposure", "rank_ic_beta_neutral", "rank_ic_sector_beta_neutral")


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


def bucket_of(by: str, n: int) -> pl.Expr:
    """Each row's place among ``n`` buckets of the rows (of each group, with ``.over``), cut at their
    quantiles of ``by``: 0 for the lowest values, ``n - 1`` for the highest; null where ``by`` is."""
    value = pl.col(by)
    return (value.rank("ordinal") - 1) * n // value.count()


def with_buckets(frame: pl.DataFrame, by: str, n: int, target: str) -> pl.DataFrame:
    """The rows with a target and a ``by``, each with ``_bucket``: its place among ``n`` buckets of
    its date's stocks (``bucket_of``, per date)."""
    value = pl.col(by)
    f = frame.filter(value.is_not_null() & value.is_not_nan() & pl.col(target).is_not_null())
    return f.with_columns(_bucket=bucket_of(by, n).over("Date").cast(pl.Int32))


def rank_ic_by_bucket(bucketed: pl.DataFrame, columns: dict[str, str], target: str, n: int, min_stocks: int = 20) -> dict[str, list]:
    """Each scorer's mean daily RankIC within each of the ``n`` buckets of ``bucketed`` (``with_buckets``)
    -> {scorer: [RankIC of bucket 0, ..., n - 1]} (None where no date has ``min_stocks`` in the
    bucket). ``columns``: {scorer: its score column}. With a point-in-time liquidity measure it says
    whether a ranking holds among the stocks a book can trade in size or lives in the illiquid tail."""
    out = {}
    for name, column in columns.items():
        scores = [summarise(daily_scores(bucketed.filter(pl.col("_bucket") == b), column, target, min_stocks))["rank_ic"] for b in range(n)]
        out[name] = [float(v) if np.isfinite(v) else None for v in scores]  # summarise gives NaN for a bucket without a scored date
    return out


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


def neutral_daily(frame: pl.DataFrame, score: str, target: str, beta: str, sector: str, min_stocks: int = 20) -> pl.DataFrame:
    """How much of a score's RankIC survives once the market and the sectors are out of the targets,
    date by date -> Date, ``beta_exposure``, ``rank_ic_beta_neutral``, ``rank_ic_sector_beta_neutral``.

    ``beta_exposure``: the Spearman correlation of ``score`` with ``beta`` (each stock's beta to the
    market, known at t); ``rank_ic_beta_neutral``: the Spearman correlation of ``score`` with the
    target less its part explained by beta that date (least squares with an intercept);
    ``rank_ic_sector_beta_neutral``: the same with the date's ``sector`` means also taken out (least
    squares on sector dummies and beta, done as beta's slope within sectors). Dates with fewer than
    ``min_stocks`` complete rows, or no beta spread within sectors (one beta for all, for one), are
    left out, as in ``daily_scores``."""
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
    ok = per_date.filter((pl.col("n") >= min_stocks) & (pl.col("var_b_in") > 0), *[pl.col(k).is_not_nan() for k in NEUTRAL_KEYS])
    return ok.select("Date", *NEUTRAL_KEYS).sort("Date")


def neutral_scores(frame: pl.DataFrame, score: str, target: str, beta: str, sector: str, min_stocks: int = 20) -> dict[str, float]:
    """``neutral_daily``'s columns, each a mean over its dates (NaN where no date qualifies)."""
    ok = neutral_daily(frame, score, target, beta, sector, min_stocks)
    return {k: float(ok[k].mean()) if ok.height else float("nan") for k in NEUTRAL_KEYS}


def newey_west_se(x: np.ndarray, lag: int) -> float:
    """Standard error of the mean of the series ``x`` with a Newey-West (Bartlett) correction for
    autocorrelation up to ``lag`` (0: the plain standard error, with the population variance).
    Daily RankICs of h-day targets overlap for h - 1 days, so their mean's error uses lag h - 1."""
    n = len(x)
    if n < 2:
        return float("nan")
    e = np.asarray(x, dtype=np.float64) - np.mean(x)
    long_run = e @ e / n
    for k in range(1, min(lag, n - 1) + 1):
        long_run += 2.0 * (1.0 - k / (lag + 1.0)) * (e[k:] @ e[:-k]) / n
    return float(np.sqrt(max(long_run, 0.0) / n))


def overlap_lag(horizon: str) -> int:
    """The Newey-West lag for a horizon named like ``"5d"``: its daily RankICs overlap for h - 1 days."""
    if not (horizon.endswith("d") and horizon[:-1].isdigit() and int(horizon[:-1]) > 0):
        raise ValueError(f"horizon {horizon!r}: expected a whole number of days such as '1d' or '20d'")
    return int(horizon[:-1]) - 1


def paired_difference(a: DailyScores, b: DailyScores, lag: int) -> dict[str, float]:
    """Per-date RankIC of ``a`` minus ``b`` on the dates both scored -> mean, Newey-West standard
    error at ``lag``, the 95% confidence interval (mean -+ 1.96 se) and the number of dates."""
    _, ia, ib = np.intersect1d(np.asarray(a.dates), np.asarray(b.dates), return_indices=True)
    diff = a.rank_ic[ia] - b.rank_ic[ib]
    return difference_summary(diff, lag)


def difference_summary(diff: np.ndarray, lag: int) -> dict[str, float]:
    """Mean, Newey-West standard error, 95% interval and count of a per-date difference series."""
    if not len(diff):
        return {"mean": float("nan"), "se": float("nan"), "ci95_low": float("nan"), "ci95_high": float("nan"), "dates": 0}
    mean, se = float(np.mean(diff)), newey_west_se(diff, lag)
    return {"mean": mean, "se": se, "ci95_low": mean - 1.96 * se, "ci95_high": mean + 1.96 * se, "dates": len(diff)}


def block_indices(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """A moving-block bootstrap's resampled positions of a series of ``n`` dates: blocks of
    ``block`` consecutive dates, their starts uniform, laid end to end and cut to ``n``."""
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=-(-n // block))
    return (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]


def shortfall_nulls(markets: list[np.ndarray], block: int, draws: int, seed: int = 0, nulls=("all equal", "as observed")) -> dict:
    """How far below the best baseline on test a model as skilled as it lands. ``markets``: per
    market, a [dates, 1 + baselines] array of per-date RankIC, the model first. -> the observed
    markets' mean of (model mean - the best baseline mean) and, for two nulls, ``draws`` values of
    the same statistic, each market's rows resampled together in blocks of ``block`` dates
    (``block_indices``: the dates' dependence kept within and across the scorers): "all equal",
    every scorer's series moved to one mean (choosing the best after the fact matters most), and
    "as observed", the baselines at their observed means and the model at the best one's (noise
    widens observed spreads, so this null's selection is if anything too small). ``nulls``: those
    to draw (each in that order from one generator, so a null's draws do not depend on whether the
    other is drawn after it)."""
    rng = np.random.default_rng(seed)
    stat = lambda m: float(m[:, 0].mean() - m[:, 1:].mean(0).max())  # noqa: E731
    observed = float(np.mean([stat(m) for m in markets]))
    drawn = {}
    for name in nulls:
        centred = []
        for m in markets:
            c = m - m.mean(0)
            if name == "as observed":
                c[:, 1:] += m[:, 1:].mean(0)
                c[:, 0] += m[:, 1:].mean(0).max()
            centred.append(c)
        drawn[name] = np.array([np.mean([stat(c[block_indices(len(c), block, rng)]) for c in centred]) for _ in range(draws)])
    return {"observed": observed, **drawn}


def on_common_dates(scores: list[DailyScores]) -> np.ndarray:
    """Several scorers' daily RankIC on the dates every one of them scored -> [dates, scorers]."""
    dates = np.asarray(scores[0].dates)
    for d in scores[1:]:
        dates = np.intersect1d(dates, np.asarray(d.dates))
    return np.column_stack([d.rank_ic[np.intersect1d(dates, np.asarray(d.dates), return_indices=True)[2]] for d in scores])


def selection_of_the_best(model: DailyScores, baselines: list[DailyScores], horizon: str, draws: int = 1000) -> dict[str, float]:
    """What a model exactly as skilled as every baseline would show against the best of them on
    test (``shortfall_nulls``' "all equal" null, one market, blocks of max(5, h) dates, on the
    dates every scorer scored): its mean and 5% quantile, and ``p``, the share of its draws at or
    below the model's observed difference (small: the model is below the best baseline by more
    than choosing the best after the fact explains)."""
    rows = on_common_dates([model, *baselines])
    if len(rows) < 2:
        return {"mean": float("nan"), "q05": float("nan"), "p": float("nan"), "draws": 0}
    out = shortfall_nulls([rows], max(5, overlap_lag(horizon) + 1), draws, nulls=("all equal",))  # the report's one: not the other's draws
    null = out["all equal"]
    return {"mean": float(null.mean()), "q05": float(np.quantile(null, 0.05)), "p": float(np.mean(null <= out["observed"])), "draws": draws}
