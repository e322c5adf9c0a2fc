"""The ``files`` source: the user's own raw tables, read without ever writing to them."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import polars as pl

from atft_kedro.checks import error_line
from atft_kedro.data.validation import RawDataError

log = logging.getLogger(__name__)

TABLE_NAMES = ("daily_quotes", "listed_info", "topix")
TEXT_COLUMNS = {"Code": pl.String, "Sector17Code": pl.String, "Sector33Code": pl.String, "MarketCode": pl.String}


def read_raw_tables(directory: str | Path) -> dict[str, pl.DataFrame]:
    """Read ``{daily_quotes,listed_info,topix}.parquet`` (or ``.csv``) from ``directory``."""
    directory = Path(directory)
    tables = {}
    for name in TABLE_NAMES:
        parquet, csv_file = directory / f"{name}.parquet", directory / f"{name}.csv"
        if parquet.exists():
            if csv_file.exists():  # an edited csv beside an older parquet would be read as if it were not there
                log.warning("%s has both %s and %s: reading the parquet, the csv is not read", directory, parquet.name, csv_file.name)
            tables[name] = _read(parquet, pl.read_parquet)
        elif csv_file.exists():
            tables[name] = _read(csv_file, lambda p: pl.read_csv(p, schema_overrides=TEXT_COLUMNS))
        else:
            raise FileNotFoundError(
                f"source=files: no {name}.parquet (or .csv) in {directory.resolve()}. "
                f"Put daily_quotes, listed_info and topix there (SPEC section 1 lists the columns), "
                "or run with the default synthetic source."
            )
    return tables


def _read(path: Path, reader) -> pl.DataFrame:
    """``reader(path)``, or an error that names the file (and a csv's first line of another width)."""
    try:
        return reader(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        where = _ragged_line(path) if path.suffix == ".csv" else ""
        raise RawDataError(f"{path}: cannot be read ({type(err).__name__}: {error_line(err)}){where}") from err


def _ragged_line(path: Path) -> str:
    """Where a csv's first row with another number of fields than its header is, if it has one."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        for row in rows:
            if row and len(row) != len(header):
                return f"; line {rows.line_num} has {len(row)} fields, the header {len(header)}"
    return ""
