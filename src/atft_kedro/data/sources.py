"""Pick the raw market from the ``source`` parameter (SPEC section 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from atft_kedro.data.files import read_raw_tables
from atft_kedro.data.jquants import (
    JQuantsConfig,
    JQuantsCredentials,
    fetch_jquants,
    tse_equities_only,
)
from atft_kedro.data.schema import HORIZONS, SECTOR33_CODES
from atft_kedro.data.synthetic import SyntheticConfig, generate_market
from atft_kedro.data.validation import ON_BAD_ROWS, ValidatedMarket, validate_market

SOURCES = ("synthetic", "files", "jquants")
ORACLE_SCHEMA = {
    "Date": pl.Date, "Code": pl.String, **{f"expected_return_{h}d": pl.Float64 for h in HORIZONS},
    "cluster": pl.Int64, "is_leader": pl.Boolean,  # the planted lead-lag clusters, to score the graphs
}  # fmt: skip


@dataclass(frozen=True)
class SourceConfig:
    synthetic_size: str = "small"
    synthetic_seed: int = 7
    synthetic_market: str = "size_leaders"  # size_leaders | random_leaders (the previous market)
    synthetic_overrides: dict = field(default_factory=dict)
    files_dir: str = "data/01_raw/files"
    on_bad_rows: str = "quarantine"
    jquants: dict = field(default_factory=dict)  # JQuantsConfig fields

    def __post_init__(self):
        if self.on_bad_rows not in ON_BAD_ROWS:  # checked before any node (Kedro builds this config from `raw`)
            raise ValueError(f"raw.on_bad_rows is 'quarantine' (set bad rows aside) or 'error' (stop at the first), got {self.on_bad_rows!r}")


def synthetic_config(cfg: SourceConfig) -> SyntheticConfig:
    """The synthetic market ``cfg`` names (its size, layout, seed and overrides)."""
    return SyntheticConfig.sized(cfg.synthetic_size, cfg.synthetic_market, seed=cfg.synthetic_seed, **cfg.synthetic_overrides)


def load_market(
    source: str, cfg: SourceConfig, credentials: JQuantsCredentials | None = None
) -> tuple[ValidatedMarket, pl.DataFrame]:
    """The validated raw market of ``source`` and the oracle (empty unless synthetic).
    ``credentials`` are used by source=jquants only."""
    if source == "synthetic":
        sim = generate_market(synthetic_config(cfg))
        market = validate_market(sim.daily_quotes, sim.listed_info, sim.topix, on_bad_rows="error")
        return market, sim.oracle.select(list(ORACLE_SCHEMA))
    if source == "files":
        tables = read_raw_tables(cfg.files_dir)
        return validate_market(**tables, on_bad_rows=cfg.on_bad_rows), pl.DataFrame(schema=ORACLE_SCHEMA)
    if source == "jquants":
        tables = fetch_jquants(JQuantsConfig(**cfg.jquants), credentials or JQuantsCredentials.from_sources(None))
        tables = tse_equities_only(tables, SECTOR33_CODES)
        return validate_market(**tables, on_bad_rows=cfg.on_bad_rows), pl.DataFrame(schema=ORACLE_SCHEMA)
    raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
