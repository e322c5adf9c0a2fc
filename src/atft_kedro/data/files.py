"""The ``files`` source: the user's own raw tables, read without ever writing to them."""

from __future__ import annotations

from pathlib import Path

import polars as pl

TABLE_NAMES = ("daily_quotes", "listed_info", "topix")


def read_raw_tables(directory: str | Path) -> dict[str, pl.DataFrame]:
    """Read ``{daily_quotes,listed_info,topix}.parquet`` (or ``.csv``) from ``directory``."""
    directory = Path(directory)
    tables = {}
    for name in TABLE_NAMES:
        parquet, csv = directory / f"{name}.parquet", directory / f"{name}.csv"
        if parquet.exists():
            tables[name] = pl.read_parquet(parquet)
        elif csv.exists():
            tables[name] = pl.read_csv(csv, schema_overrides={"Code": pl.String, "Sector17Code": pl.String,
                                                              "Sector33Code": pl.String, "MarketCode": pl.String})
        else:
            raise FileNotFoundError(
                f"source=files: no {name}.parquet (or .csv) in {directory.resolve()}. "
                f"Put daily_quotes, listed_info and topix there (SPEC section 1 lists the columns), "
                "or run with the default synthetic source."
            )
    return tables
