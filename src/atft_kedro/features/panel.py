"""The adjusted daily panel: one row per stock and trading day from its listing to its delisting.

Missing days inside a stock's life (suspensions, gaps in the data) become rows with ``traded=False``
whose prices carry the last close forward and whose volume is 0, so that every shift and window in
the feature builders counts trading days of the common calendar and ``target_h`` really is h days
ahead. Such a row exists only where the stock trades again later, so it is never part of its date's
cross-section (features, normalisation, graph and model take the stocks that traded that day).
Adjusted prices are used throughout: features only ever take ratios of prices of one stock up to
day t, so the later rescaling that a split applies to adjusted history never leaks into them.

Volume is not used adjusted. A source's adjusted volume is its history rescaled back from every
split up to the download (a stock that splits in a year shows 4 times the volume today for a 1:4
split), and features take its level (``log_volume``) and its logs across days without trades,
which would read a split still to come. The panel's ``volume`` is adjusted forward instead: the
shares traded that day in the stock's shares of its first day in the data, the raw ``Volume``
divided by the splits up to that day (the cumulative product of ``1 / AdjustmentFactor``): as
continuous across a split as the adjusted volume, and known on the day.
"""

from __future__ import annotations

import numpy as np
import polars as pl

PANEL_PRICE_COLUMNS = {
    "AdjustmentOpen": "open",
    "AdjustmentHigh": "high",
    "AdjustmentLow": "low",
    "AdjustmentClose": "close",
    "TurnoverValue": "turnover",
}


def volume_adjusted_forward() -> pl.Expr:
    """Over raw quotes: the raw ``Volume`` in the shares of the stock's first day in them, divided
    by the splits up to each day (the cumulative product of ``1 / AdjustmentFactor``, 0.5 on the
    day a 1:2 split takes effect, in date order)."""
    splits = (1.0 / pl.col("AdjustmentFactor")).cum_prod().over("Code", order_by="Date")
    return (pl.col("Volume") / splits).alias("volume")


def _sectors_asof(keys: pl.DataFrame, listed_info: pl.DataFrame) -> pl.DataFrame:
    """Sector and market of each (Date, Code) from the latest listed_info snapshot on or before Date;
    dates before a code's first snapshot take that first snapshot (sectors rarely change)."""
    attrs = ["Sector17Code", "Sector33Code", "MarketCode"]
    snapshots = listed_info.select("Date", "Code", *attrs).sort("Code", "Date")
    asof = keys.sort("Code", "Date").join_asof(snapshots, on="Date", by="Code", strategy="backward", check_sortedness=False)
    first = snapshots.group_by("Code").first().drop("Date")
    return (
        asof.join(first, on="Code", how="left", suffix="_first")
        .with_columns([pl.coalesce(a, f"{a}_first").alias(a) for a in attrs])
        .select("Date", "Code", *attrs)
    )


def build_panel(daily_quotes: pl.DataFrame, listed_info: pl.DataFrame) -> pl.DataFrame:
    """Validated raw quotes -> panel sorted by (Code, Date) with columns
    Date, Code, open, high, low, close, volume, turnover, traded, Sector17Code, Sector33Code, MarketCode."""
    calendar = daily_quotes.select(pl.col("Date").unique().sort()).with_row_index("t")
    quotes = daily_quotes.select("Date", "Code", *PANEL_PRICE_COLUMNS, volume_adjusted_forward()).rename(PANEL_PRICE_COLUMNS)
    quotes = quotes.join(calendar, on="Date")
    grid = (
        quotes.group_by("Code")
        .agg(pl.int_ranges(pl.col("t").min(), pl.col("t").max() + 1, dtype=pl.UInt32).alias("t"))
        .explode("t")
        .join(calendar, on="t")
    )
    panel = grid.join(quotes.drop("t"), on=["Date", "Code"], how="left").sort("Code", "Date")
    prices = ["open", "high", "low", "close"]
    panel = panel.with_columns(traded=pl.col("close").is_not_null()).with_columns(
        pl.col("close").forward_fill().over("Code"),
        pl.col("volume").fill_null(0.0),
        pl.col("turnover").fill_null(0.0),
    )
    panel = panel.with_columns([pl.col(c).fill_null(pl.col("close")) for c in prices if c != "close"])
    panel = panel.join(_sectors_asof(panel.select("Date", "Code"), listed_info), on=["Date", "Code"], how="left")
    return panel.select(
        "Date", "Code", *prices, "volume", "turnover", "traded", "Sector17Code", "Sector33Code", "MarketCode"
    ).sort("Code", "Date")


def date_stock_cells(frame: pl.DataFrame) -> tuple[pl.Series, pl.Series, np.ndarray, np.ndarray]:
    """The [date, stock] grid of a long frame (one row per Date and Code): its sorted dates and
    codes, and each row's cell (``grid[d[i], s[i]]`` is row i; rows keep their order)."""
    dates, codes = frame["Date"].unique().sort(), frame["Code"].unique().sort()
    cells = (
        frame.select("Date", "Code")
        .join(pl.DataFrame({"Date": dates, "_d": np.arange(len(dates))}), on="Date", how="left", maintain_order="left")
        .join(pl.DataFrame({"Code": codes, "_s": np.arange(len(codes))}), on="Code", how="left", maintain_order="left")
    )
    return dates, codes, cells["_d"].to_numpy(), cells["_s"].to_numpy()
