"""One immutable parquet file per (API version, table, date)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from atft_kedro.atomic import atomic_file


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
        frames = [pl.read_parquet(self.path(table, d)) for d in dates if self.has(table, d)]
        frames = [f for f in frames if f.height]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
