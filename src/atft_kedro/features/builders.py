"""Point-in-time features (SPEC section 3).

Every feature of day t is a function of prices and volumes of days <= t only: rolling windows end at
t, shifts look back, exponential averages run forward in time. The panel is sorted by (Code, Date)
and has one row per trading day of each stock's life, so windows are computed over the whole column
at once and masked where they would reach back into the previous stock (``_k`` = row number within
the stock). That avoids a group-by per window, which is what makes the full-size market fast.

Stock-level features vary across the cross-section and are normalised per date later; date-constant
features (market, regime) form the separate market-context table and are never z-scored per date.
A date's cross-section (sector means, ranks, the market's breadth and dispersion) is the stocks that
traded that day: a row without a trade exists only where the stock trades again later.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import polars as pl

ANN = 252.0
_EPS = 1e-12
_K = pl.col("_k")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    group: str
    date_constant: bool
    description: str


# ----------------------------------------------------------------------------- window helpers
def lag(e: pl.Expr, n: int) -> pl.Expr:
    return pl.when(_K >= n).then(e.shift(n))


def rmean(e: pl.Expr, w: int) -> pl.Expr:
    return pl.when(_K >= w - 1).then(e.rolling_mean(w))


def rstd(e: pl.Expr, w: int) -> pl.Expr:
    return pl.when(_K >= w - 1).then(e.rolling_std(w))


def rsum(e: pl.Expr, w: int) -> pl.Expr:
    return pl.when(_K >= w - 1).then(e.rolling_sum(w))


def rmax(e: pl.Expr, w: int) -> pl.Expr:
    return pl.when(_K >= w - 1).then(e.rolling_max(w))


def rmin(e: pl.Expr, w: int) -> pl.Expr:
    return pl.when(_K >= w - 1).then(e.rolling_min(w))


def ewm(e: pl.Expr, *, alpha: float, warmup: int) -> pl.Expr:
    """Recursive exponential average per stock (y_t = a x_t + (1 - a) y_{t-1}, started at the first
    value), reported from row ``warmup`` of the stock on."""
    return pl.when(_K >= warmup).then(e.ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True).over("Code"))


def rcov(x: pl.Expr, y: pl.Expr, w: int) -> pl.Expr:
    return rmean(x * y, w) - rmean(x, w) * rmean(y, w)


def safe_div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return pl.when(b.abs() > _EPS).then(a / b)


def rsi(close: pl.Expr, n: int) -> pl.Expr:
    """Wilder's RSI: 100 - 100 / (1 + avg_gain / avg_loss), averages by the recursion
    y_t = y_{t-1} + (x_t - y_{t-1}) / n started at the first change; reported from change n on."""
    delta = close - lag(close, 1)
    gain = ewm(delta.clip(lower_bound=0.0), alpha=1.0 / n, warmup=n)
    loss = ewm((-delta).clip(lower_bound=0.0), alpha=1.0 / n, warmup=n)
    return 100.0 - 100.0 / (1.0 + safe_div(gain, loss).fill_null(pl.when(gain > 0).then(1e9)))


# ----------------------------------------------------------------------------- stock features
def _stock_feature_exprs() -> list[tuple[str, str, str, pl.Expr]]:
    """(group, name, description, expression) over the panel plus the base columns of stage 1."""
    c, o, h, lo = pl.col("close"), pl.col("open"), pl.col("high"), pl.col("low")
    lr, mlr = pl.col("_lr"), pl.col("_mlr")
    v, lv, lt = pl.col("volume"), pl.col("_lv"), pl.col("_lt")
    hl, co = pl.col("_hl"), pl.col("_co")
    out: list[tuple[str, str, str, pl.Expr]] = []

    def add(group, name, desc, e):
        out.append((group, name, desc, e))

    for n in (1, 2, 3, 5, 10, 20, 60, 120):
        add("returns", f"ret_{n}d", f"close / close {n} days earlier - 1", c / lag(c, n) - 1)
    for n in (1, 5, 20):
        add("returns", f"log_ret_{n}d", f"sum of daily log returns over {n} days", rsum(lr, n))

    for n in (5, 10, 20, 60):
        add("volatility", f"vol_{n}d", f"annualised std of daily log returns over {n} days", rstd(lr, n) * math.sqrt(ANN))
    add("volatility", "parkinson_vol_20d", "Parkinson high-low volatility, 20 days",
        (rmean(hl**2, 20) / (4 * math.log(2)) * ANN).sqrt())
    add("volatility", "garman_klass_vol_20d", "Garman-Klass volatility, 20 days",
        (rmean(0.5 * hl**2 - (2 * math.log(2) - 1) * co**2, 20).clip(lower_bound=0) * ANN).sqrt())
    rs = (h / c).log() * (h / o).log() + (lo / c).log() * (lo / o).log()
    add("volatility", "rogers_satchell_vol_20d", "Rogers-Satchell volatility, 20 days",
        (rmean(rs, 20).clip(lower_bound=0) * ANN).sqrt())
    add("volatility", "vol_ratio_5_20", "vol_5d / vol_20d", safe_div(rstd(lr, 5), rstd(lr, 20)))
    add("volatility", "vol_ratio_20_60", "vol_20d / vol_60d", safe_div(rstd(lr, 20), rstd(lr, 60)))
    add("volatility", "downside_vol_20d", "annualised root mean square of negative log returns, 20 days",
        (rmean(lr.clip(upper_bound=0) ** 2, 20) * ANN).sqrt())

    for n in (5, 10, 20, 60, 120):
        add("moving_average", f"ma_gap_{n}d", f"close / {n}-day simple average - 1", c / rmean(c, n) - 1)
    for n in (12, 26):
        add("moving_average", f"ema_gap_{n}d", f"close / {n}-day exponential average - 1",
            c / ewm(c, alpha=2 / (n + 1), warmup=n - 1) - 1)
    add("moving_average", "ma_slope_5d", "5-day average / its value 5 days earlier - 1", rmean(c, 5) / lag(rmean(c, 5), 5) - 1)
    add("moving_average", "ma_slope_20d", "20-day average / its value 5 days earlier - 1", rmean(c, 20) / lag(rmean(c, 20), 5) - 1)
    add("moving_average", "ma_slope_60d", "60-day average / its value 20 days earlier - 1", rmean(c, 60) / lag(rmean(c, 60), 20) - 1)
    add("moving_average", "ma_cross_5_20", "5-day average / 20-day average - 1", rmean(c, 5) / rmean(c, 20) - 1)
    add("moving_average", "ma_cross_20_60", "20-day average / 60-day average - 1", rmean(c, 20) / rmean(c, 60) - 1)

    for n in (2, 14, 28):
        add("oscillator", f"rsi_{n}", f"Wilder RSI over {n} days", rsi(c, n))
    macd = (ewm(c, alpha=2 / 13, warmup=25) - ewm(c, alpha=2 / 27, warmup=25)) / c
    macd_signal = ewm(macd, alpha=2 / 10, warmup=33)
    add("oscillator", "macd", "(EMA12 - EMA26) / close", macd)
    add("oscillator", "macd_signal", "9-day EMA of macd", macd_signal)
    add("oscillator", "macd_hist", "macd - macd_signal", macd - macd_signal)
    sd20 = rstd(c, 20)
    add("oscillator", "bb_pctb_20", "Bollinger %B (20 days, 2 std)", safe_div(c - rmean(c, 20) + 2 * sd20, 4 * sd20))
    add("oscillator", "bb_width_20", "Bollinger band width / 20-day average", 4 * sd20 / rmean(c, 20))
    true_range = pl.max_horizontal(h, lag(c, 1)) - pl.min_horizontal(lo, lag(c, 1))
    add("oscillator", "atr_14", "Wilder average true range (14) / close", ewm(true_range, alpha=1 / 14, warmup=14) / c)
    stoch = safe_div(c - rmin(lo, 14), rmax(h, 14) - rmin(lo, 14))
    add("oscillator", "stoch_k_14", "stochastic %K over 14 days", stoch)
    add("oscillator", "stoch_d_14", "3-day average of %K", rmean(stoch, 3))
    tp = (h + lo + c) / 3
    add("oscillator", "cci_20", "commodity channel index, 20 days (std scaled)", safe_div(tp - rmean(tp, 20), 0.015 * rstd(tp, 20)))

    dlv = lv - lag(lv, 1)
    add("liquidity", "log_volume", "log(1 + volume)", lv)
    add("liquidity", "log_turnover", "log(1 + turnover value)", lt)
    add("liquidity", "volume_ratio_5_20", "5-day / 20-day average volume", safe_div(rmean(v, 5), rmean(v, 20)))
    add("liquidity", "volume_ratio_1_20", "volume / 20-day average volume", safe_div(v, rmean(v, 20)))
    add("liquidity", "turnover_z_20", "z-score of log turnover within its last 20 days", safe_div(lt - rmean(lt, 20), rstd(lt, 20)))
    add("liquidity", "amihud_20d", "log of the 20-day Amihud illiquidity (|return| per yen traded)",
        (rmean(pl.col("_abs_r") / (pl.col("turnover") + 1.0), 20) + _EPS).log())
    add("liquidity", "volume_vol_20d", "std of daily log-volume changes, 20 days", rstd(dlv, 20))
    add("liquidity", "volume_trend_5_60", "mean log volume, 5 days minus 60 days", rmean(lv, 5) - rmean(lv, 60))
    add("liquidity", "zero_volume_frac_20d", "share of the last 20 days without trading", rmean((v <= 0).cast(pl.Float64), 20))
    add("liquidity", "price_volume_corr_20d", "correlation of log return and log-volume change, 20 days",
        safe_div(rcov(lr, dlv, 20), rstd(lr, 20) * rstd(dlv, 20)))

    add("range", "hl_range", "(high - low) / close", (h - lo) / c)
    add("range", "close_location", "(close - low) / (high - low)", safe_div(c - lo, h - lo))
    add("range", "gap_overnight", "open / previous close - 1", o / lag(c, 1) - 1)
    add("range", "ret_intraday", "close / open - 1", c / o - 1)
    add("range", "upper_shadow", "(high - max(open, close)) / close", (h - pl.max_horizontal(o, c)) / c)
    add("range", "lower_shadow", "(min(open, close) - low) / close", (pl.min_horizontal(o, c) - lo) / c)
    for n in (20, 120):
        add("range", f"dist_high_{n}d", f"close / highest high of {n} days - 1", c / rmax(h, n) - 1)
        add("range", f"dist_low_{n}d", f"close / lowest low of {n} days - 1", c / rmin(lo, n) - 1)

    beta60 = safe_div(rcov(lr, mlr, 60), rstd(mlr, 60) ** 2)
    add("market_relative", "beta_60d", "beta of daily log returns to the index, 60 days", beta60)
    add("market_relative", "beta_20d", "beta to the index, 20 days", safe_div(rcov(lr, mlr, 20), rstd(mlr, 20) ** 2))
    add("market_relative", "corr_mkt_60d", "correlation with the index, 60 days", safe_div(rcov(lr, mlr, 60), rstd(lr, 60) * rstd(mlr, 60)))
    add("market_relative", "alpha_60d", "annualised mean return net of beta x index return, 60 days",
        (rmean(lr, 60) - beta60 * rmean(mlr, 60)) * ANN)
    add("market_relative", "idio_vol_60d", "annualised residual volatility after beta, 60 days",
        ((rstd(lr, 60) ** 2 - beta60**2 * rstd(mlr, 60) ** 2).clip(lower_bound=0) * ANN).sqrt())
    add("market_relative", "resid_ret_1d", "log return net of beta_60d x index log return", lr - beta60 * mlr)
    add("market_relative", "resid_ret_5d", "5-day log return net of beta_60d x index", rsum(lr, 5) - beta60 * rsum(mlr, 5))
    add("market_relative", "rel_ret_20d", "20-day log return minus the index's", rsum(lr, 20) - rsum(mlr, 20))
    return out


SECTOR_FEATURES = [
    ("sector", "sector_ret_1d", "mean ret_1d of the stock's Sector33 that day"),
    ("sector", "sector_ret_5d", "mean ret_5d of the sector"),
    ("sector", "sector_ret_20d", "mean ret_20d of the sector"),
    ("sector", "rel_sector_ret_1d", "ret_1d minus the sector mean"),
    ("sector", "rel_sector_ret_5d", "ret_5d minus the sector mean"),
    ("sector", "rel_sector_ret_20d", "ret_20d minus the sector mean"),
    ("sector", "sector_rank_ret_5d", "percentile of ret_5d within the sector"),
    ("sector", "sector_rank_ret_20d", "percentile of ret_20d within the sector"),
    ("sector", "sector_vol_20d", "mean vol_20d of the sector"),
    ("sector", "sector_breadth", "share of the sector's stocks up that day"),
    ("sector", "sector_log_size", "log number of stocks in the sector that day"),
]
RANK_FEATURES = [
    ("cross_section_rank", f"cs_rank_{name}", f"percentile of {name} across all stocks that day")
    for name in ("ret_1d", "ret_5d", "ret_20d", "vol_20d", "log_turnover", "amihud_20d", "beta_60d")
]


def _pct_rank(e: pl.Expr) -> pl.Expr:
    """Percentile rank in [0, 1]; apply ``.over(group)`` to the result."""
    return (e.rank("average") - 1) / (e.count() - 1).clip(lower_bound=1).cast(pl.Float64)


def traded_only(e: pl.Expr) -> pl.Expr:
    """``e`` where the stock traded that day, else null: what enters a date's cross-section. A row
    without a trade (a suspension) exists only if the stock trades again later, so counting it
    would tell the other stocks of that day something of the future."""
    return pl.when(pl.col("traded")).then(e)


def _sector_and_rank_exprs() -> list[pl.Expr]:
    """Each date's sector and cross-sectional features, over the stocks that traded that day (a
    stock that did not still gets its sector's values; its own ranks are null)."""
    s = ["Date", "Sector33Code"]
    r1, r5, r20 = pl.col("ret_1d"), pl.col("ret_5d"), pl.col("ret_20d")
    m1, m5, m20 = (traded_only(r).mean().over(s) for r in (r1, r5, r20))
    traded_in_sector = pl.col("traded").cast(pl.Float64).sum().over(s)
    exprs = [
        m1.alias("sector_ret_1d"),
        m5.alias("sector_ret_5d"),
        m20.alias("sector_ret_20d"),
        (r1 - m1).alias("rel_sector_ret_1d"),
        (r5 - m5).alias("rel_sector_ret_5d"),
        (r20 - m20).alias("rel_sector_ret_20d"),
        _pct_rank(traded_only(r5)).over(s).alias("sector_rank_ret_5d"),
        _pct_rank(traded_only(r20)).over(s).alias("sector_rank_ret_20d"),
        traded_only(pl.col("vol_20d")).mean().over(s).alias("sector_vol_20d"),
        traded_only((r1 > 0).cast(pl.Float64)).mean().over(s).alias("sector_breadth"),
        pl.when(traded_in_sector > 0).then(traded_in_sector.log()).alias("sector_log_size"),
    ]
    for _, name, _ in RANK_FEATURES:
        base = pl.col(name.removeprefix("cs_rank_"))
        exprs.append(_pct_rank(traded_only(base)).over("Date").alias(name))
    return exprs


# ----------------------------------------------------------------------------- market context
def _market_exprs() -> list[tuple[str, str, pl.Expr]]:
    c, h, lo = pl.col("mkt_close"), pl.col("mkt_high"), pl.col("mkt_low")
    lr = (c / c.shift(1)).log()
    sma = lambda n: c.rolling_mean(n)  # noqa: E731
    return [
        ("mkt_ret_1d", "index return, 1 day", c / c.shift(1) - 1),
        ("mkt_ret_5d", "index return, 5 days", c / c.shift(5) - 1),
        ("mkt_ret_20d", "index return, 20 days", c / c.shift(20) - 1),
        ("mkt_ret_60d", "index return, 60 days", c / c.shift(60) - 1),
        ("mkt_vol_20d", "annualised index volatility, 20 days", lr.rolling_std(20) * math.sqrt(ANN)),
        ("mkt_vol_60d", "annualised index volatility, 60 days", lr.rolling_std(60) * math.sqrt(ANN)),
        ("mkt_vol_ratio_20_60", "index vol 20d / 60d", lr.rolling_std(20) / lr.rolling_std(60)),
        ("mkt_ma_gap_20d", "index / its 20-day average - 1", c / sma(20) - 1),
        ("mkt_ma_gap_60d", "index / its 60-day average - 1", c / sma(60) - 1),
        ("mkt_ma_gap_120d", "index / its 120-day average - 1 (regime)", c / sma(120) - 1),
        ("mkt_drawdown_120d", "index / its 120-day high - 1", c / c.rolling_max(120) - 1),
        ("mkt_range_20d", "index Parkinson volatility, 20 days",
         ((h / lo).log().pow(2).rolling_mean(20) / (4 * math.log(2)) * ANN).sqrt()),
    ]


CROSS_MARKET = [
    ("mkt_breadth", "share of stocks up that day"),
    ("mkt_dispersion", "cross-sectional std of ret_1d that day"),
]


def build_features(panel: pl.DataFrame, topix: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, list[dict]]:
    """Panel + index -> (stock features [Date, Code, F...], market features [Date, M...], manifest)."""
    index = (
        topix.sort("Date")
        .select("Date", mkt_close="Close", mkt_high="High", mkt_low="Low")
    )
    market = index.with_columns([e.alias(n) for n, _, e in _market_exprs()])
    base = (
        panel.lazy()
        .join(index.lazy().select("Date", _mlr=(pl.col("mkt_close") / pl.col("mkt_close").shift(1)).log()), on="Date", how="left")
        .sort("Code", "Date")  # joins do not keep row order; every window below relies on it
        .with_columns(_k=pl.int_range(pl.len()).over("Code"))
        .with_columns(
            _lr=(pl.col("close") / lag(pl.col("close"), 1)).log(),
            _lv=pl.col("volume").log1p(),
            _lt=pl.col("turnover").log1p(),
            _hl=(pl.col("high") / pl.col("low")).log(),
            _co=(pl.col("close") / pl.col("open")).log(),
        )
        .with_columns(_abs_r=(pl.col("close") / lag(pl.col("close"), 1) - 1).abs())
    )
    stock = _stock_feature_exprs()
    feats = base.with_columns([e.alias(name) for _, name, _, e in stock]).with_columns(_sector_and_rank_exprs())
    stock_names = [name for _, name, _, _ in stock] + [n for _, n, _ in SECTOR_FEATURES + RANK_FEATURES]
    float_cols = [pl.col(n).cast(pl.Float32).fill_nan(None) for n in stock_names]
    features = feats.select("Date", "Code", *float_cols, "traded").collect()

    cross = features.filter(pl.col("traded")).group_by("Date").agg(
        (pl.col("ret_1d") > 0).mean().alias("mkt_breadth"), pl.col("ret_1d").std().alias("mkt_dispersion")
    )
    features = features.drop("traded")
    market_names = [n for n, _, _ in _market_exprs()] + [n for n, _ in CROSS_MARKET]
    market = (
        market.join(cross, on="Date", how="left")
        .select("Date", *[pl.col(n).cast(pl.Float32).fill_nan(None) for n in market_names])
        .sort("Date")
    )
    manifest = [asdict(FeatureSpec(name, group, False, desc)) for group, name, desc, _ in stock]
    manifest += [asdict(FeatureSpec(n, g, False, d)) for g, n, d in SECTOR_FEATURES + RANK_FEATURES]
    manifest += [asdict(FeatureSpec(n, "market", True, d)) for n, d, _ in _market_exprs()]
    manifest += [asdict(FeatureSpec(n, "market", True, d)) for n, d in CROSS_MARKET]
    return features, market, manifest


def stock_feature_groups() -> set[str]:
    """The groups of the per-stock features ``build_features`` makes (its manifest's, less the market context's)."""
    return {group for group, *_ in _stock_feature_exprs()} | {group for group, *_ in SECTOR_FEATURES + RANK_FEATURES}


def stock_feature_names(manifest: list[dict]) -> list[str]:
    """The manifest's per-stock features (the date-constant ones form the market context)."""
    return [m["name"] for m in manifest if not m["date_constant"]]
