"""The raw data contract (SPEC section 1): J-Quants API v1 column names and their v2 aliases."""

from __future__ import annotations

import polars as pl

HORIZONS = (1, 5, 10, 20)  # trading days ahead: the one list every part of the project uses

# The 33 TSE sector codes (Sector33Code) and their 17-sector grouping, as J-Quants reports them.
SECTOR33_CODES = (
    "0050", "1050", "2050", "3050", "3100", "3150", "3200", "3250", "3300", "3350", "3400",
    "3450", "3500", "3550", "3600", "3650", "3700", "3750", "3800", "4050", "5050", "5100",
    "5150", "5200", "5250", "6050", "6100", "7050", "7100", "7150", "7200", "8050", "9050",
)  # fmt: skip
SECTOR33_TO_17 = (
    1, 2, 3, 1, 1, 5, 4, 5, 6, 6, 7, 7, 7, 8, 9, 9, 10, 11, 10, 12, 13, 13, 13, 13, 13, 14, 14,
    15, 15, 16, 16, 17, 17,
)  # fmt: skip
MARKET_CODES = ("0111", "0112", "0113")  # Prime, Standard, Growth

# Required columns and their logical dtype class per raw table.
NUMERIC = "numeric"
TEXT = "text"
DATE = "date"

QUOTES_COLUMNS: dict[str, str] = {
    "Date": DATE,
    "Code": TEXT,
    "Open": NUMERIC,
    "High": NUMERIC,
    "Low": NUMERIC,
    "Close": NUMERIC,
    "Volume": NUMERIC,
    "TurnoverValue": NUMERIC,
    "AdjustmentFactor": NUMERIC,
    "AdjustmentOpen": NUMERIC,
    "AdjustmentHigh": NUMERIC,
    "AdjustmentLow": NUMERIC,
    "AdjustmentClose": NUMERIC,
    "AdjustmentVolume": NUMERIC,
}
QUOTES_OPTIONAL: dict[str, str] = {"UpperLimit": NUMERIC, "LowerLimit": NUMERIC}

LISTED_COLUMNS: dict[str, str] = {
    "Date": DATE,
    "Code": TEXT,
    "Sector17Code": TEXT,
    "Sector33Code": TEXT,
    "MarketCode": TEXT,
}
LISTED_OPTIONAL: dict[str, str] = {"CompanyName": TEXT}

TOPIX_COLUMNS: dict[str, str] = {
    "Date": DATE,
    "Open": NUMERIC,
    "High": NUMERIC,
    "Low": NUMERIC,
    "Close": NUMERIC,
}

TABLES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "daily_quotes": (QUOTES_COLUMNS, QUOTES_OPTIONAL),
    "listed_info": (LISTED_COLUMNS, LISTED_OPTIONAL),
    "topix": (TOPIX_COLUMNS, {}),
}

# J-Quants API v2 short names -> v1 names of the raw contract.
V2_TO_V1: dict[str, str] = {
    "O": "Open",
    "H": "High",
    "L": "Low",
    "C": "Close",
    "UL": "UpperLimit",
    "LL": "LowerLimit",
    "Vo": "Volume",
    "Va": "TurnoverValue",
    "AdjFactor": "AdjustmentFactor",
    "AdjO": "AdjustmentOpen",
    "AdjH": "AdjustmentHigh",
    "AdjL": "AdjustmentLow",
    "AdjC": "AdjustmentClose",
    "AdjVo": "AdjustmentVolume",
    "CoName": "CompanyName",
    "CoNameEn": "CompanyNameEnglish",
    "S17": "Sector17Code",
    "S17Nm": "Sector17CodeName",
    "S33": "Sector33Code",
    "S33Nm": "Sector33CodeName",
    "Mkt": "MarketCode",
    "MktNm": "MarketCodeName",
    "ScaleCat": "ScaleCategory",
}

PRICE_COLUMNS = ("Open", "High", "Low", "Close")
ADJ_PRICE_COLUMNS = ("AdjustmentOpen", "AdjustmentHigh", "AdjustmentLow", "AdjustmentClose")
VOLUME_COLUMNS = ("Volume", "TurnoverValue", "AdjustmentVolume")
LIMIT_FLAGS = ("UpperLimit", "LowerLimit")  # optional: 1 when the day hit the price limit


def to_v1_names(df: pl.DataFrame) -> pl.DataFrame:
    """Rename J-Quants v2 short column names to the v1 names; v1 frames pass unchanged."""
    mapping = {c: V2_TO_V1[c] for c in df.columns if c in V2_TO_V1 and V2_TO_V1[c] not in df.columns}
    return df.rename(mapping) if mapping else df


def dtype_class(dtype: pl.DataType) -> str | None:
    if dtype.is_numeric():
        return NUMERIC
    if dtype == pl.String or dtype == pl.Categorical:
        return TEXT
    if dtype == pl.Date or dtype == pl.Datetime:
        return DATE
    return None
