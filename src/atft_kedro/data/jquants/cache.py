"""One immutable parquet file per (API version, table, date)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from atft_kedro.atomic import atomic_file
from atft_kedro.checks import error_line
from atft_kedro.data.jquants.config import JQuantsError


class JQuantsCache:
    """One immutable parquet file per (API version, table, date)."""

    def __init__(self, root: str | Path, api_version: str):
        self.root = Path(root) / api_version

    def path(self, table: str, date: dt.date) -> Path:
        return self.root / table / f"{date.isoformat()}.parquet"

    def has(self, table: str, date: dt.date) -> bool:
        return self.path(table, date).exists()

    def put(self, table: str, date: dt.date, records: list[dict]) -> None:
        path = self.path(table, date)
        if path.exists():
            return  # immutable: never rewritten
        frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
        with atomic_file(path) as tmp:
            frame.write_parquet(tmp)

    def read(self, table: str, dates: list[dt.date]) -> pl.DataFrame:
        frames = [self._read(self.path(table, d)) for d in dates if self.has(table, d)]
        frames = [f for f in frames if f.height]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()

    @staticmethod
    def _read(path: Path) -> pl.DataFrame:
        """One cached answer; a file that cannot be read is named, with how to fetch it again (the
        cache never rewrites a file itself)."""
        try:
            return pl.read_parquet(path)
        except Exception as err:  # polars' ComputeError or an OSError, depending on the damage
            raise JQuantsError(f"the J-Quants cache file {path} cannot be read ({type(err).__name__}: {error_line(err)}); "
                               "delete it and run again to fetch that date anew") from err
