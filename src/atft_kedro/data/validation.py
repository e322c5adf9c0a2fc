"""Validation of the raw tables (SPEC section 1).

Structural problems (a missing column, a wrong type, a duplicate (Date, Code), dates out of order)
stop the run with a ``RawDataError`` naming the table, the column and the offending rows. Row-level
problems (a missing, NaN, infinite or non-positive price; the same for the adjustment factor; a
missing, NaN, infinite or negative volume or turnover; a limit flag other than 0 or 1; High < Low; a
code with no known sector) either stop the run the same way (``on_bad_rows="error"``) or are set aside into a quarantine table that lists every
row and the reason (``on_bad_rows="quarantine"``, the default). Input frames are never modified.
Row numbers in messages are 0-based positions in the table as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from atft_kedro.data.schema import (
    ADJ_PRICE_COLUMNS,
    DATE,
    LIMIT_FLAGS,
    NUMERIC,
    PRICE_COLUMNS,
    TABLES,
    TEXT,
    VOLUME_COLUMNS,
    dtype_class,
    to_v1_names,
)

QUARANTINE_SCHEMA = {"table": pl.String, "row": pl.Int64, "Date": pl.Date, "Code": pl.String, "reason": pl.String}
_MAX_SHOWN = 5


class RawDataError(ValueError):
    """A raw table breaks the data contract; the message names table, column and rows."""


@dataclass(frozen=True)
class ValidatedMarket:
    daily_quotes: pl.DataFrame
    listed_info: pl.DataFrame
    topix: pl.DataFrame
    quarantine: pl.DataFrame


def _rows(df: pl.DataFrame, mask: pl.Expr) -> list[int]:
    return df.filter(mask)["_row"].to_list()


def _shown(rows: list) -> str:
    more = f" and {len(rows) - _MAX_SHOWN} more" if len(rows) > _MAX_SHOWN else ""
    return f"{rows[:_MAX_SHOWN]}{more}"


def _examples(values: pl.Series) -> str:
    """The first few distinct offending values, quoted as they are in the file."""
    return ", ".join(repr(v) for v in values.unique(maintain_order=True).head(_MAX_SHOWN).to_list())


def _columns_named(row: dict) -> list[str]:
    """The columns a bad row's reason names (e.g. "High < Low": High and Low)."""
    return [w for w in row["_reason"].split(" ") if w in row and not w.startswith("_")]


def _number_hint(values: pl.Series) -> str:
    text = [v for v in values.to_list() if isinstance(v, str)]
    if any("," in v and v.replace(",", "").replace(".", "", 1).lstrip("-").isdigit() for v in text):
        return " (a thousands separator? write 1234.5, not 1,234.5)"
    if any(v.strip() in ("", "-", "NA", "N/A", "null", "None", "#N/A") for v in text):
        return " (leave a missing number's cell empty; it is then set aside row by row)"
    return ""


def _date_hint(values: pl.Series) -> str:
    text = [v for v in values.to_list() if isinstance(v, str)]
    if any("/" in v or (v.isdigit() and len(v) == 8) for v in text):
        return " (write dates as YYYY-MM-DD, e.g. 2020-01-06)"
    return ""


def _hint(missing: list[str]) -> str:
    """How a table of plain prices gets the J-Quants columns it lacks, where it is one of those."""
    hints = []
    if any(c.startswith("Adjustment") for c in missing):
        hints.append("if the prices are already adjusted for splits, add AdjustmentFactor = 1 and each Adjustment* column equal to its raw one")
    if "TurnoverValue" in missing:
        hints.append("without a traded value, add TurnoverValue = Close x Volume")
    if "MarketCode" in missing:
        hints.append("for a market of one segment, add MarketCode with one value for every stock (e.g. '0111')")
    if "Sector17Code" in missing:
        hints.append("without a 17-sector classification, add Sector17Code equal to Sector33Code (it is carried, not used)")
    return "; " + "; ".join(hints) if hints else ""


def _coerce_and_check_columns(name: str, df: pl.DataFrame) -> pl.DataFrame:
    """Map v2 names, check required columns and their types; parse ISO date strings."""
    required, optional = TABLES[name]
    df = to_v1_names(df)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise RawDataError(f"{name}: missing column(s) {missing}; the table has {df.columns}{_hint(missing)}")
    df = df.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    for col, kind in {**required, **{c: k for c, k in optional.items() if c in df.columns}}.items():
        got = dtype_class(df.schema[col])
        if kind == DATE and got == TEXT:
            parsed = df[col].str.to_date("%Y-%m-%d", strict=False)
            bad = df.filter(parsed.is_null() & df[col].is_not_null())
            if bad.height:
                raise RawDataError(
                    f"{name}: column {col!r} has values that are not dates (YYYY-MM-DD) at rows "
                    f"{_shown(bad['_row'].to_list())}: {_examples(bad[col])}{_date_hint(bad[col])}"
                )
            df = df.with_columns(parsed.alias(col))
        elif kind == DATE and got == DATE:
            df = df.with_columns(pl.col(col).cast(pl.Date))
        elif kind == NUMERIC and got == TEXT:  # a csv column of numbers with something else in it
            bad = df.filter(df[col].str.strip_chars().cast(pl.Float64, strict=False).is_null() & df[col].is_not_null())
            raise RawDataError(
                f"{name}: column {col!r} has type {df.schema[col]}, expected numeric: text that is not a number at "
                f"rows {_shown(bad['_row'].to_list())}: {_examples(bad[col])}{_number_hint(bad[col])}"
            )
        elif got != kind:
            raise RawDataError(
                f"{name}: column {col!r} has type {df.schema[col]}, expected {kind}"
                + (" (codes are strings such as '72030', so leading zeros survive)" if col.endswith("Code") else "")
                + (" (dates written as numbers, e.g. 20200106, read as numbers: write them as YYYY-MM-DD)" if kind == DATE and got == NUMERIC else "")
            )
        elif kind == NUMERIC:
            df = df.with_columns(pl.col(col).cast(pl.Float64))
    nulls = [c for c in ("Date", "Code") if c in required and df[c].null_count()]
    for col in nulls:
        raise RawDataError(f"{name}: column {col!r} is empty at rows {_shown(_rows(df, pl.col(col).is_null()))}")
    return df


def _why_none_left(quotes: pl.DataFrame, bad: pl.DataFrame, known: pl.Series) -> str:
    """Why every row of daily_quotes was set aside: codes listed_info does not share (e.g. 4-digit
    codes against J-Quants' 5-digit ones), or else the reasons, counted."""
    if not quotes["Code"].is_in(known.implode()).any():
        return (
            f": no code of daily_quotes is in listed_info (daily_quotes has e.g. {_examples(quotes['Code'].unique().sort())}, "
            f"listed_info {_examples(known.sort())}); codes are compared as text, so '7203' and '72030' differ"
        )
    counts = bad.group_by("_reason").len().sort("len", descending=True)
    return ": every row was set aside (" + ", ".join(f"{n} {reason}" for reason, n in counts.iter_rows()) + ")"


def _check_keys_and_order(name: str, df: pl.DataFrame) -> None:
    keys = ["Date", "Code"] if "Code" in df.columns else ["Date"]
    dup = df.filter(pl.struct(keys).is_duplicated())
    if dup.height:
        first = dup.head(_MAX_SHOWN).select(keys).rows()
        raise RawDataError(
            f"{name}: duplicate {tuple(keys)} at rows {_shown(dup['_row'].to_list())}, e.g. {first[0]}"
        )
    group = "Code" if "Code" in df.columns else None
    prev = pl.col("Date").shift(1)
    if group:
        prev = prev.over(group)
    back = df.filter(pl.col("Date") < prev)
    if back.height:
        where = f" (code {back['Code'][0]})" if group else ""
        raise RawDataError(
            f"{name}: dates out of order{where}: a date earlier than the row before it"
            + (" of the same code" if group else "")
            + f" at rows {_shown(back['_row'].to_list())}"
        )


def _value_checks(df: pl.DataFrame, columns: tuple[str, ...], domain: str) -> list[tuple[pl.Expr, str]]:
    """(condition, reason) per column: null, NaN and infinite alike are not values; then the domain."""
    checks = []
    for c in (c for c in columns if c in df.columns):
        checks += [(pl.col(c).is_null(), f"missing {c}"), (pl.col(c).is_nan(), f"NaN {c}"), (pl.col(c).is_infinite(), f"infinite {c}")]
        if domain == "positive":
            checks.append((pl.col(c) <= 0, f"non-positive {c}"))
        elif domain == "non-negative":
            checks.append((pl.col(c) < 0, f"negative {c}"))
        elif domain == "flag":
            checks.append((~pl.col(c).is_in([0.0, 1.0]), f"{c} not 0 or 1"))
    return checks


def _bad_row_reasons(df: pl.DataFrame, checks: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """One reason string per row (the first check it fails), null for a good row."""
    reason = pl.lit(None, dtype=pl.String)
    for cond, text in reversed(checks):
        reason = pl.when(cond.fill_null(False)).then(pl.lit(text)).otherwise(reason)
    return reason


def _price_checks(df: pl.DataFrame, price_cols: tuple[str, ...]) -> list[tuple[pl.Expr, str]]:
    return _value_checks(df, price_cols, "positive") + [(pl.col("High") < pl.col("Low"), "High < Low")]


def _quote_checks(quotes: pl.DataFrame) -> list[tuple[pl.Expr, str]]:
    return (
        _price_checks(quotes, PRICE_COLUMNS + ADJ_PRICE_COLUMNS)
        + _value_checks(quotes, ("AdjustmentFactor",), "positive")
        + _value_checks(quotes, VOLUME_COLUMNS, "non-negative")
        + _value_checks(quotes, LIMIT_FLAGS, "flag")
    )


ON_BAD_ROWS = ("quarantine", "error")  # what becomes of a bad row: set aside with its reason, or the run stops


def validate_market(
    daily_quotes: pl.DataFrame,
    listed_info: pl.DataFrame,
    topix: pl.DataFrame,
    *,
    on_bad_rows: str = "quarantine",
) -> ValidatedMarket:
    """Check the three raw tables against the contract; return clean copies and the quarantine."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows must be 'quarantine' or 'error', got {on_bad_rows!r}")
    frames = {
        "daily_quotes": _coerce_and_check_columns("daily_quotes", daily_quotes),
        "listed_info": _coerce_and_check_columns("listed_info", listed_info),
        "topix": _coerce_and_check_columns("topix", topix),
    }
    for name, df in frames.items():
        if not df.height:
            raise RawDataError(f"{name}: the table has no rows")
        _check_keys_and_order(name, df)

    quotes, listed, index = frames["daily_quotes"], frames["listed_info"], frames["topix"]
    bad_sector = listed.filter(
        pl.col("Sector33Code").is_null() | ~pl.col("Sector33Code").str.contains(r"^\d+$").fill_null(False)
    )
    if bad_sector.height:
        raise RawDataError(
            f"listed_info: column 'Sector33Code' has unknown sector codes "
            f"{bad_sector['Sector33Code'].unique().to_list()[:_MAX_SHOWN]} at rows {_shown(bad_sector['_row'].to_list())} "
            "(sector codes are whole numbers written as text, e.g. '3050': number your own sectors, one code each)"
        )
    index_bad = index.with_columns(_reason=_bad_row_reasons(index, _price_checks(index, PRICE_COLUMNS)))
    index_bad = index_bad.filter(pl.col("_reason").is_not_null())
    if index_bad.height:
        first = index_bad.row(0, named=True)
        value = f" ({''.join(f'{c} = {first[c]!r}, ' for c in _columns_named(first))}on {first['Date']})"
        raise RawDataError(
            f"topix: {first['_reason']} at rows {_shown(index_bad['_row'].to_list())}{value} "
            "(the market index cannot be set aside row by row)"
        )

    known = listed["Code"].unique()
    quotes = quotes.with_columns(
        _reason=pl.coalesce(
            _bad_row_reasons(quotes, _quote_checks(quotes)),
            pl.when(~pl.col("Code").is_in(known.implode())).then(pl.lit("unknown sector: code not in listed_info")),
        )
    )
    bad = quotes.filter(pl.col("_reason").is_not_null())
    if bad.height and on_bad_rows == "error":
        first = bad.row(0, named=True)
        value = "".join(f"; {c} = {first[c]!r}" for c in _columns_named(first))
        raise RawDataError(
            f"daily_quotes: {bad.height} bad row(s), first: {first['_reason']} at row {first['_row']} "
            f"(Date {first['Date']}, Code {first['Code']}{value}); rows {_shown(bad['_row'].to_list())}. "
            "Fix the file or set on_bad_rows: quarantine to set these rows aside."
        )
    if bad.height == quotes.height:
        raise RawDataError(f"daily_quotes: no row is left to build features from{_why_none_left(quotes, bad, known)}")
    quarantine = bad.select(
        pl.lit("daily_quotes").alias("table"), pl.col("_row").alias("row"), "Date", "Code", pl.col("_reason").alias("reason")
    ).cast(QUARANTINE_SCHEMA)
    return ValidatedMarket(
        daily_quotes=quotes.filter(pl.col("_reason").is_null()).drop("_row", "_reason"),
        listed_info=listed.drop("_row"),
        topix=index.drop("_row"),
        quarantine=quarantine,
    )
