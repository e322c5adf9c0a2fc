"""The embedded synthetic market (SPEC section 2).

A seeded simulator that writes the three raw tables of the data contract plus, separately, each
stock's true expected forward return (the oracle). Returns are generated as

    r[i, t+1] = mu[i, t] + beta_i m[t+1] + gamma_i f[sector(i), t+1] + lambda_i g[cluster(i), t+1] + eps[i, t+1]

with fat-tailed innovations (Student-t), GARCH(1,1) volatility clustering for the market and for every
stock, 33 sectors (grouped into 17), three market segments with different liquidity, splits with
AdjustmentFactor, listings, delistings and missing days.

Planted structure: mu[i, t] is known at the close of day t and is the oracle's 1-day forecast:

* ``alpha``: a slow stock-specific drift (AR(1), persistence ``alpha_persistence``); learnable from
  medium-term momentum of the stock's own returns.
* ``reversal``: a fraction of yesterday's idiosyncratic shock reverts; learnable from the stock's own
  1-day return relative to its market and sector.
* ``short_term_momentum`` (0 by default): the larger, more traded half of the stocks (by latent
  size) continues this much of its idiosyncratic shock the next day, and the smaller half reverts
  this much more of it, as high-turnover stocks show short-term momentum and low-turnover ones
  reversal (Medhat and Schmeling, 2022, RFS). Its sign turns with size, so a linear map of the
  features ranks on it hardly at all; a tree or a network can, from a return times a size feature.
* ``lead_lag``: stocks sit in clusters of ``cluster_size``; half are *leaders* that load fully on the
  cluster shock g[c, t] the day it happens, the others are *followers* that load only
  ``follower_sync`` on it the same day and catch up ``lead_lag`` of it the next day. Most of that
  signal is visible only through the leaders' returns, i.e. through correlated peers: this is what the
  graph attention has to find.

Who leads follows what is documented on real markets (docs/synthetic_market.md):

* ``leaders="size"`` (default): within a cluster the larger half leads. Followers take in the whole
  cluster shock, ``follower_sync`` (75%) the same day and ``lead_lag`` (25%) the next: slow diffusion
  of news to small firms, which also gives their daily returns a little positive autocorrelation
  (as small-stock portfolios show). The cluster factor is strong enough (``cluster_vol``) that its
  members correlate at 0.2-0.35 on market-relative returns, as close industry peers do, so that a
  correlation graph over a long window finds most of them. Each stock has a latent size
  (its segment's scale times a lognormal), its traded value follows its size, and small stocks are
  more volatile; big, liquid firms lead small ones within industries (Hou, 2007, RFS), so leaders
  are observable from size and turnover. ``cross_sector_fraction`` of the stocks (default half) sit
  in clusters drawn across sectors, as customer-supplier links are (Cohen and Frazzini, 2008, JF);
  the others in clusters inside their sector. A sector average cannot stand in for a cross-sector
  cluster: in a small market a sector of ~12 stocks holds one or two clusters, and its mean return
  carries most of an in-sector cluster's move.
* ``leaders="random"``: a random half of each cluster leads, whatever its size: with the earlier
  strengths (followers 30% the same day, 35% the next, ``cluster_vol`` 0.010) and every cluster
  inside its sector, ``MARKETS["random_leaders"]`` (``raw.synthetic_market: random_leaders``) is the
  earlier market, table for table (``cross_sector_fraction`` 1: its all-cross-sector variant).

The strength of each part is set in ``SyntheticConfig``; the resulting oracle RankIC on the default
market is measured in the tests and written in docs/synthetic_market.md.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd
import polars as pl

from atft_kedro.data.schema import HORIZONS, MARKET_CODES, SECTOR33_CODES, SECTOR33_TO_17


SIZES: dict[str, tuple[int, int]] = {
    "tiny": (60, 320),
    "small": (400, 600),
    "full": (3800, 1200),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, seed and the strength of every planted effect (daily return units)."""

    n_stocks: int = 400
    n_days: int = 600
    seed: int = 7
    start_date: str = "2018-01-04"
    market_vol: float = 0.011
    market_drift: float = 0.0003
    sector_vol: float = 0.007
    cluster_vol: float = 0.014
    idio_vol: float = 0.018
    tail_df: float = 4.0
    alpha_std: float = 0.0008
    alpha_persistence: float = 0.98
    reversal: float = 0.06
    short_term_momentum: float = 0.0  # the larger half (by latent size) continues this much of its shock, the smaller reverts this much more: an interaction
    lead_lag: float = 0.25
    follower_sync: float = 0.75
    cluster_size: int = 8
    leaders: str = "size"  # size: the larger half of a cluster leads | random: a random half (the previous market)
    cross_sector_fraction: float = 0.5  # share of stocks in clusters drawn across sectors (the rest: inside their sector)
    size_dispersion: float = 1.0  # std of log size within a segment (leaders="size")
    late_listing_fraction: float = 0.08
    delisting_fraction: float = 0.05
    missing_day_rate: float = 0.002
    split_fraction: float = 0.04

    def __post_init__(self):
        for f in fields(self):  # a value of another kind would fail deep inside numpy, or pass as something else
            value, kind = getattr(self, f.name), {"int": numbers.Integral, "float": numbers.Real}.get(f.type)
            if kind and (isinstance(value, bool) or not isinstance(value, kind)):
                raise ValueError(f"synthetic {f.name} is a {'whole number' if f.type == 'int' else 'number'}, got {value!r}")
        if self.seed < 0:
            raise ValueError(f"synthetic seed is a whole number >= 0, got {self.seed}")
        if self.leaders not in ("size", "random"):
            raise ValueError(f"synthetic leaders must be 'size' or 'random', got {self.leaders!r}")
        if not 0.0 <= self.cross_sector_fraction <= 1.0:
            raise ValueError(f"cross_sector_fraction must be in [0, 1], got {self.cross_sector_fraction}")

    @classmethod
    def sized(cls, size: str, market: str = "size_leaders", **overrides) -> "SyntheticConfig":
        """A market of a named size (``SIZES``) and layout (``MARKETS``), plus field overrides."""
        if size not in SIZES:
            raise ValueError(f"unknown synthetic size {size!r}; choose one of {sorted(SIZES)}")
        if market not in MARKETS:
            raise ValueError(f"unknown synthetic market {market!r}; choose one of {sorted(MARKETS)}")
        n_stocks, n_days = SIZES[size]
        return replace(cls(n_stocks=n_stocks, n_days=n_days, **MARKETS[market]), **overrides)


# the layouts of the lead-lag; random_leaders is the market of earlier releases, table for table
MARKETS: dict[str, dict] = {
    "size_leaders": {},
    "random_leaders": {"leaders": "random", "cross_sector_fraction": 0.0, "cluster_vol": 0.010, "lead_lag": 0.35, "follower_sync": 0.3},
}


@dataclass(frozen=True)
class SyntheticMarket:
    daily_quotes: pl.DataFrame
    listed_info: pl.DataFrame
    topix: pl.DataFrame
    oracle: pl.DataFrame  # Date, Code, expected_return_{h}d: never fed to the model
    # with ``generate_market(cfg, keep_paths=True)``: the simulated paths behind the tables, each
    # [days, stocks] in ``codes`` order (``alpha``, ``eps``, ``eps_var``, ``mu``; ``dates``, ``codes``, ``beta``),
    # for diagnostics of what a forecaster can see (experiments/synthetic_ceiling.py)
    paths: dict[str, np.ndarray] | None = None


def _student_t(rng: np.random.Generator, df: float, size) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(df, size=size) * np.sqrt((df - 2.0) / df)


def _garch_paths(z: np.ndarray, base_vol: np.ndarray, a: float = 0.07, b: float = 0.90) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) shocks for innovations z [D, N] with unconditional vol base_vol [N], and the
    variance each was drawn with."""
    omega = base_vol**2 * (1.0 - a - b)
    var = base_vol**2 * np.ones_like(z[0])
    out, variance = np.empty_like(z), np.empty_like(z)
    for t in range(z.shape[0]):
        variance[t] = var
        out[t] = np.sqrt(var) * z[t]
        var = omega + a * out[t] ** 2 + b * var
    return out, variance


def _some(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """A mask picking round(fraction * n) stocks, at least one when fraction > 0."""
    mask = np.zeros(n, dtype=bool)
    if fraction > 0:
        mask[rng.choice(n, size=max(1, round(fraction * n)), replace=False)] = True
    return mask


SEGMENT_SCALE = np.array([3e9, 6e8, 2e8])  # typical yen traded a day in Prime, Standard, Growth


def _clusters(cfg: SyntheticConfig, rng, side, sector: np.ndarray, order: np.ndarray, log_size: np.ndarray):
    """-> (cluster id, is_leader) per stock. Clusters are consecutive chunks of ``cluster_size`` of
    each group: every sector's stocks (``order``), or a random order of the cross-sector share."""
    n = len(sector)
    if cfg.cross_sector_fraction >= 1.0:
        groups = [rng.permutation(n)]  # the main stream, as the earlier all-cross-sector market drew it
    else:
        crossing = np.zeros(n, dtype=bool)
        if cfg.cross_sector_fraction > 0:
            crossing[side.choice(n, size=round(cfg.cross_sector_fraction * n), replace=False)] = True
        groups = [order[(sector[order] == s) & ~crossing[order]] for s in range(33)]
        groups.append(side.permutation(np.flatnonzero(crossing)))
    cluster = np.empty(n, dtype=np.int64)
    leader = np.zeros(n, dtype=bool)
    next_cluster = 0
    for members in groups:
        for start in range(0, len(members), cfg.cluster_size):
            chunk = members[start : start + cfg.cluster_size]
            if cfg.leaders == "size":
                chunk = chunk[np.argsort(-log_size[chunk], kind="stable")]  # the larger half leads
            cluster[chunk] = next_cluster
            leader[chunk[: max(1, len(chunk) // 2)]] = True
            next_cluster += 1
    return cluster, leader


def generate_market(cfg: SyntheticConfig, keep_paths: bool = False) -> SyntheticMarket:
    """Simulate a market; the same config (seed included) always gives the same tables.
    ``keep_paths``: also return the simulated paths (``SyntheticMarket.paths``)."""
    rng = np.random.default_rng(cfg.seed)
    n, d = cfg.n_stocks, cfg.n_days
    dates = pd.bdate_range(cfg.start_date, periods=d).values.astype("datetime64[D]")

    # --- the universe: codes, sectors (uneven sizes), segments, clusters inside sectors
    codes = np.sort(rng.choice(np.arange(1300, 9990), size=n, replace=False)).astype(str)
    codes = np.char.add(codes, "0")
    sector = rng.choice(33, size=n, p=rng.dirichlet(np.full(33, 3.0)))
    market = rng.choice(3, size=n, p=[0.45, 0.40, 0.15])
    order = np.lexsort((rng.random(n), sector))  # stocks grouped by sector, random within
    # draws of the size layout come from a stream of their own: the random layout's tables stay as they were
    side = np.random.default_rng([cfg.seed, 1])
    log_size = np.log(SEGMENT_SCALE)[market] + cfg.size_dispersion * side.standard_normal(n)
    cluster, leader = _clusters(cfg, rng, side, sector, order, log_size)
    n_clusters = int(cluster.max()) + 1

    beta = np.clip(rng.normal(1.0, 0.3, n), 0.2, 2.0)
    gamma = np.clip(rng.normal(1.0, 0.3, n), 0.0, 2.0)
    idio_base = cfg.idio_vol * np.exp(rng.normal(0.0, 0.3, n)) * np.array([0.85, 1.0, 1.35])[market]

    # --- factors and shocks for days 0..d-1 (return of day t is realised at its close)
    mkt = cfg.market_drift + _garch_paths(_student_t(rng, 5.0, (d, 1)), np.array([cfg.market_vol]))[0][:, 0]
    sec = cfg.sector_vol * _student_t(rng, 5.0, (d, 33))
    clu = cfg.cluster_vol * rng.standard_normal((d, n_clusters))
    eps, eps_var = _garch_paths(_student_t(rng, cfg.tail_df, (d, n)), idio_base)

    alpha = np.empty((d, n))
    alpha_innov = cfg.alpha_std * np.sqrt(1 - cfg.alpha_persistence**2)
    alpha[0] = cfg.alpha_std * rng.standard_normal(n)
    for t in range(1, d):
        alpha[t] = cfg.alpha_persistence * alpha[t - 1] + alpha_innov * rng.standard_normal(n)

    g = clu[:, cluster]  # (D, N) the shock of each stock's cluster
    follower = ~leader
    # mu[t]: expected return of day t+1, known at the close of day t
    reversal = cfg.reversal + np.where(log_size < np.median(log_size), 1.0, -1.0) * cfg.short_term_momentum
    mu = alpha - reversal * eps + np.where(follower, cfg.lead_lag, 0.0) * g + beta * cfg.market_drift
    sync = np.where(leader, 1.0, cfg.follower_sync)
    contemporaneous = beta * (mkt[:, None] - cfg.market_drift) + gamma * sec[:, sector] + sync * g + eps
    ret = np.empty((d, n))
    ret[0] = contemporaneous[0]
    ret[1:] = mu[:-1] + contemporaneous[1:]
    ret = np.clip(ret, -0.6, 1.5)

    # --- economic prices, splits, raw prices
    start_price = np.exp(rng.uniform(np.log(200), np.log(20000), n))
    econ = start_price * np.cumprod(1.0 + ret, axis=0)  # (D, N)
    split_ratio = np.ones((d, n))
    splitters = _some(rng, n, cfg.split_fraction)
    split_day = rng.integers(d // 10, d - 1, n)
    split_ratio[split_day[splitters], np.flatnonzero(splitters)] = rng.choice([2.0, 3.0, 5.0], splitters.sum())
    cum_split = np.cumprod(split_ratio, axis=0)  # shares per original share, as of day t
    raw_close = np.round(econ / cum_split, 1)
    later_factor = cum_split / cum_split[-1]  # multiply raw by this to adjust to the last day's share count
    adj_close = raw_close * later_factor

    vol_today = np.abs(eps) + 0.3 * np.abs(mkt[:, None])
    overnight = ret * rng.uniform(0.0, 0.5, (d, n)) + 0.2 * idio_base * rng.standard_normal((d, n))
    prev_raw = np.vstack([raw_close[:1], raw_close[:-1] * (cum_split[:-1] / cum_split[1:])])
    raw_open = np.round(prev_raw * np.exp(np.clip(overnight, -0.5, 0.5)), 1)
    wick = 0.5 * idio_base * np.abs(rng.standard_normal((2, d, n)))
    raw_high = np.round(np.maximum(raw_open, raw_close) * np.exp(wick[0]), 1)
    raw_low = np.round(np.minimum(raw_open, raw_close) * np.exp(-wick[1]), 1)
    raw_low = np.maximum(raw_low, 0.1)

    liquidity = np.exp(rng.normal(0.0, 1.0, n)) * np.array([3e5, 6e4, 2e4])[market]  # shares a day
    if cfg.leaders == "size":  # traded value follows size: shares a day = value / the starting price
        liquidity = np.exp(log_size) / start_price
    volume = np.round(
        liquidity * cum_split * np.exp(0.35 * rng.standard_normal((d, n)) + 12.0 * vol_today)
    )
    turnover = volume * (raw_high + raw_low + 2 * raw_close) / 4.0
    adj_factor = 1.0 / split_ratio

    # --- who trades when: late listings, delistings, missing days
    first = np.zeros(n, dtype=np.int64)
    late = _some(rng, n, cfg.late_listing_fraction)
    first[late] = rng.integers(1, int(0.7 * d), late.sum())
    last = np.full(n, d - 1)
    gone = _some(rng, n, cfg.delisting_fraction)
    last[gone] = rng.integers(int(0.3 * d), d - 1, gone.sum())
    last = np.maximum(last, first + 30)
    day = np.arange(d)[:, None]
    alive = (day >= first) & (day <= last)
    missing = (rng.random((d, n)) < cfg.missing_day_rate) & (day > first) & ~(split_ratio > 1)
    present = alive & ~missing

    tt, ii = np.nonzero(present)  # row-major: sorted by date, then code
    quotes = pl.DataFrame(
        {
            "Date": pl.Series(dates[tt]),
            "Code": codes[ii],
            "Open": raw_open[tt, ii],
            "High": raw_high[tt, ii],
            "Low": raw_low[tt, ii],
            "Close": raw_close[tt, ii],
            "Volume": volume[tt, ii],
            "TurnoverValue": np.round(turnover[tt, ii]),
            "AdjustmentFactor": adj_factor[tt, ii],
            "AdjustmentOpen": raw_open[tt, ii] * later_factor[tt, ii],
            "AdjustmentHigh": raw_high[tt, ii] * later_factor[tt, ii],
            "AdjustmentLow": raw_low[tt, ii] * later_factor[tt, ii],
            "AdjustmentClose": adj_close[tt, ii],
            "AdjustmentVolume": volume[tt, ii] / later_factor[tt, ii],
        }
    )
    listed = pl.DataFrame(
        {
            "Date": pl.Series(np.repeat(dates[:1], n)),
            "Code": codes,
            "CompanyName": np.char.add("Synthetic ", codes),
            "Sector17Code": np.array(SECTOR33_TO_17)[sector].astype(str),
            "Sector33Code": np.array(SECTOR33_CODES)[sector],
            "MarketCode": np.array(MARKET_CODES)[market],
        }
    )

    index_ret = np.nanmean(np.where(alive, ret, np.nan), axis=1)
    index_close = 1500.0 * np.cumprod(1.0 + index_ret)
    index_prev = np.concatenate([[1500.0], index_close[:-1]])
    index_open = index_prev * np.exp(0.3 * np.log1p(index_ret))
    topix = pl.DataFrame(
        {
            "Date": pl.Series(dates),
            "Open": index_open,
            "High": np.maximum(index_open, index_close) * np.exp(0.002 * np.abs(rng.standard_normal(d))),
            "Low": np.minimum(index_open, index_close) * np.exp(-0.002 * np.abs(rng.standard_normal(d))),
            "Close": index_close,
        }
    )

    # --- the oracle: E[sum of the next h daily returns | close of day t]
    beta_drift = beta * cfg.market_drift
    transient = mu - alpha - beta_drift  # reversal and lead-lag: only the next day
    oracle_cols = {}
    for h in HORIZONS:
        alpha_sum = alpha * (1 - cfg.alpha_persistence**h) / (1 - cfg.alpha_persistence)
        oracle_cols[f"expected_return_{h}d"] = (alpha_sum + transient + h * beta_drift)[tt, ii]
    oracle = pl.DataFrame(
        {"Date": quotes["Date"], "Code": quotes["Code"], **oracle_cols,
         "is_leader": leader[ii], "cluster": cluster[ii]}
    )  # fmt: skip
    paths = dict(dates=dates, codes=codes, alpha=alpha, eps=eps, eps_var=eps_var, mu=mu, beta=beta) if keep_paths else None
    return SyntheticMarket(quotes, listed, topix, oracle, paths)
