"""A cost-aware long-short backtest of a cross-sectional score.

At each rebalance date t the portfolio goes long the top ``quantile`` of the stocks that traded on
t, ranked by their score at t, and short the bottom ``quantile``, equally weighted (+1/n_long,
-1/n_short: gross 2, net 0). With a buffer (``hold_quantile`` above ``quantile``) a stock already
held keeps its place while it ranks within the top (bottom) ``hold_quantile``, and the rest of each
book, still n stocks, is filled from the top (bottom) down: the same book size, less trading. It is
held for h trading days and earns ``target_{h}d`` of each stock over (t, t+h]: a score known at the
close of t only ever meets returns after t. For h > 1 the holding periods do not overlap (rebalance
every h-th date). A position whose exit price is missing (suspended or delisted by t+h) earns 0:
selection never uses whether a stock survives. A period with no exit price at all (it starts within
the data's last h dates, so it has not ended yet) is left out and counted as skipped, not booked as
a flat period that trades and pays costs.

Turnover at a rebalance is sum_i |w_new - w_old| (0..4); its cost is ``cost_bp`` basis points per
unit of turnover, charged to that period. Reported: annualised compound return, Sharpe (mean / std
of period returns x sqrt(252 / h)), maximum drawdown of the compounded curve and mean turnover per
rebalance, all after costs, and the Sharpe before costs (``ls_sharpe_gross``: what the ranking
earns, apart from what trading it costs; a 1-day book turns over most of itself every day).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from atft_kedro.checks import whole_number


@dataclass(frozen=True)
class BacktestConfig:
    quantile: float = 0.2
    cost_bp: float = 10.0
    min_stocks: int = 20
    hold_quantile: float | None = None  # a held stock stays while it ranks within this fraction; None: ``quantile`` (no buffer)

    def __post_init__(self):
        if not 0 < self.quantile <= 0.5:
            raise ValueError(f"quantile is the fraction of stocks held long and, as many, short: in (0, 0.5], got {self.quantile!r}")
        if self.hold_quantile is not None and not self.quantile <= self.hold_quantile <= 0.5:
            raise ValueError(f"hold_quantile is the fraction within which a held stock keeps its place: in [quantile ({self.quantile}), 0.5], "
                             f"or null for no buffer, got {self.hold_quantile!r}")  # fmt: skip
        if not self.cost_bp >= 0:
            raise ValueError(f"cost_bp is a cost in basis points per unit of turnover, >= 0, got {self.cost_bp!r}")
        if not whole_number(self.min_stocks, 2):
            raise ValueError(f"min_stocks is the stocks a date needs to be scored, a whole number >= 2, got {self.min_stocks!r}")


@dataclass(frozen=True)
class BacktestResult:
    dates: list  # rebalance dates used
    gross: np.ndarray  # period returns before costs
    net: np.ndarray  # after costs
    turnover: np.ndarray
    skipped_dates: int
    horizon: int

    def summary(self) -> dict[str, float]:
        if len(self.net) == 0:
            return dict.fromkeys(("ls_sharpe", "ls_sharpe_gross", "ls_ann_return", "max_drawdown", "turnover"), float("nan"))
        per_year = 252.0 / self.horizon
        curve = np.cumprod(1.0 + self.net)
        years = len(self.net) / per_year
        return {
            "ls_sharpe": _sharpe(self.net, per_year),
            "ls_sharpe_gross": _sharpe(self.gross, per_year),
            "ls_ann_return": float(curve[-1] ** (1.0 / years) - 1.0),
            "max_drawdown": float((curve / np.maximum.accumulate(np.concatenate([[1.0], curve]))[1:] - 1.0).min()),
            "turnover": float(self.turnover.mean()),
        }


def _sharpe(returns: np.ndarray, per_year: float) -> float:
    """Annualised Sharpe of period returns (NaN for fewer than two periods or no spread)."""
    sd = returns.std(ddof=1) if len(returns) > 1 else float("nan")
    return float(returns.mean() / sd * np.sqrt(per_year)) if sd and sd > 0 else float("nan")


def _book(codes: list, n: int, hold: int, held: set) -> set:
    """One side's n stocks from ``codes`` (best first): those ``held`` that rank within the first
    ``hold``, then the best of the rest; with ``hold`` == n, simply the first n."""
    kept = set([c for c in codes[:hold] if c in held][:n])  # the best n of them, where the book was larger
    return kept | set([c for c in codes if c not in kept][: n - len(kept)])


def long_short_backtest(frame: pl.DataFrame, score: str, target: str, horizon: int, cfg: BacktestConfig) -> BacktestResult:
    """``frame``: Date, Code, ``score`` (null/NaN: not tradable), ``target`` (forward h-day return)
    and, where it has one, ``traded`` (False: no price on that date, so not tradable then)."""
    f = frame.select("Date", "Code", pl.col(score).alias("s"), pl.col(target).alias("y"))
    if "traded" in frame.columns:  # a suspended stock keeps its forecast but cannot be bought or sold at t's close
        f = f.with_columns(pl.when(frame["traded"].fill_null(False)).then(pl.col("s")).alias("s"))
    f = f.sort("Date", "Code")
    dates = f["Date"].unique().sort().to_list()
    rebalance = dates[::horizon]
    by_date = {d[0]: g for d, g in f.filter(pl.col("Date").is_in(rebalance)).group_by("Date")}
    prev: dict[str, float] = {}
    used, gross, net, turns = [], [], [], []
    skipped = 0
    for d in rebalance:
        g = by_date.get(d)
        g = g.filter(pl.col("s").is_not_null() & pl.col("s").is_not_nan()) if g is not None else None
        if g is None or g.height < cfg.min_stocks or not g["y"].is_not_null().any() or g["y"].is_nan().all():
            skipped += 1  # too few stocks, or a period not yet over (no exit price known: the data's last h dates)
            continue
        n = max(1, int(np.floor(g.height * cfg.quantile)))
        hold = max(n, int(np.floor(g.height * (cfg.hold_quantile or cfg.quantile))))
        ranked = g.sort("s", "Code")
        codes = ranked["Code"].to_list()
        short = _book(codes, n, hold, {c for c, w in prev.items() if w < 0})
        long = _book(codes[::-1], n, hold, {c for c, w in prev.items() if w > 0})
        weights = {c: -1.0 / n for c in short} | {c: 1.0 / n for c in long}
        side = lambda book: ranked.filter(pl.col("Code").is_in(list(book)))["y"].fill_null(0.0).fill_nan(0.0).mean()  # noqa: E731  (summed in rank order)
        ret = side(long) - side(short)
        # summed exactly: a set of codes has no fixed order across processes (string hashing), and a float sum would differ in its last bits
        turnover = math.fsum(abs(weights.get(c, 0.0) - prev.get(c, 0.0)) for c in weights.keys() | prev.keys())
        used.append(d)
        gross.append(ret)
        net.append(ret - turnover * cfg.cost_bp / 1e4)
        turns.append(turnover)
        prev = weights
    return BacktestResult(used, np.array(gross), np.array(net), np.array(turns), skipped, horizon)
