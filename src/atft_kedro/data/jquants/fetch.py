"""Fill the cache for a date range and read it back as the raw contract's tables."""

from __future__ import annotations

import datetime as dt
import logging
import time

import polars as pl
from tqdm.auto import tqdm

from atft_kedro.data.jquants.cache import JQuantsCache
from atft_kedro.data.jquants.client import _client_class
from atft_kedro.data.jquants.config import ENDPOINTS, JQuantsConfig, JQuantsError, business_days
from atft_kedro.data.jquants.credentials import JQuantsCredentials
from atft_kedro.data.jquants.retries import RateLimiter, _with_retries
from atft_kedro.data.schema import LISTED_COLUMNS, LISTED_OPTIONAL, QUOTES_COLUMNS, QUOTES_OPTIONAL, TOPIX_COLUMNS, to_v1_names

log = logging.getLogger(__name__)

CONTRACT = {
    "daily_quotes": [*QUOTES_COLUMNS, *QUOTES_OPTIONAL],
    "listed_info": [*LISTED_COLUMNS, *LISTED_OPTIONAL],
    "topix": list(TOPIX_COLUMNS),
}


def fetch_jquants(
    cfg: JQuantsConfig,
    credentials: JQuantsCredentials,
    *,
    progress: bool = True,
    today: dt.date | None = None,
    sleep=time.sleep,
) -> dict[str, pl.DataFrame]:
    """Fill the cache for ``cfg``'s date range and return the raw tables with v1 column names."""
    dates = business_days(cfg, today)
    listed_dates = dates[:: max(cfg.listed_info_every, 1)]
    cache = JQuantsCache(cfg.cache_dir, cfg.api_version)
    quotes_todo = [d for d in dates if not cache.has("daily_quotes", d)]
    listed_todo = [d for d in listed_dates if not cache.has("listed_info", d)]
    topix_todo = [d for d in dates if not cache.has("topix", d)]
    todo = [("daily_quotes", d) for d in quotes_todo] + [("listed_info", d) for d in listed_todo]
    log.info(
        "jquants %s: %d business days %s .. %s; cached: %d quote days, %d listed_info snapshots; to fetch: %d "
        "requests or more at %g/min (plan %s)",
        cfg.api_version, len(dates), dates[0], dates[-1], len(dates) - len(quotes_todo),
        len(listed_dates) - len(listed_todo), len(todo) + bool(topix_todo), cfg.rate, cfg.plan,
    )  # fmt: skip
    if todo or topix_todo:
        credentials.check(cfg.api_version)
        client = _client_class()(cfg, credentials, RateLimiter(cfg.rate, sleep=sleep))
        endpoints = ENDPOINTS[cfg.api_version]
        if topix_todo:  # one ranged request (paginated) for the index, then one file per date
            path, key = endpoints["topix"]
            lo, hi = topix_todo[0].isoformat(), topix_todo[-1].isoformat()
            rows = _with_retries(cfg, f"topix {lo}..{hi}", lambda: client._get_paginated(path, {"from": lo, "to": hi}, key), sleep)
            by_date: dict[str, list[dict]] = {}
            for r in rows:
                by_date.setdefault(str(r.get("Date", ""))[:10], []).append(r)
            for d in topix_todo:
                cache.put("topix", d, by_date.get(d.isoformat(), []))
        for table, d in tqdm(todo, desc="J-Quants", unit="request", disable=not progress):
            path, key = endpoints[table]
            ask = lambda path=path, key=key, d=d: client._get_paginated(path, {"date": d.isoformat()}, key)
            rows = _with_retries(cfg, f"{table} {d}", ask, sleep)
            cache.put(table, d, rows)
    return {table: _to_contract(table, cache.read(table, listed_dates if table == "listed_info" else dates)) for table in CONTRACT}


def _to_contract(table: str, raw: pl.DataFrame) -> pl.DataFrame:
    """v1 names, the contract's columns, Date parsed, codes as strings."""
    if raw.is_empty():
        raise JQuantsError(f"J-Quants returned no {table} rows for the dates asked for; check raw.jquants.start_date / end_date")
    df = to_v1_names(raw)
    df = df.select([c for c in CONTRACT[table] if c in df.columns])
    df = df.with_columns(pl.col("Date").cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d"))
    text = [c for c in ("Code", "Sector17Code", "Sector33Code", "MarketCode", "CompanyName") if c in df.columns]
    flags = [c for c in ("UpperLimit", "LowerLimit") if c in df.columns]  # "0"/"1" strings in the API
    df = df.with_columns([pl.col(c).cast(pl.String) for c in text] + [pl.col(c).cast(pl.Float64, strict=False) for c in flags])
    return df.sort([c for c in ("Code", "Date") if c in df.columns])


def tse_equities_only(tables: dict[str, pl.DataFrame], sector_codes) -> dict[str, pl.DataFrame]:
    """Keep the codes whose Sector33Code is one of the 33 TSE sectors: J-Quants also lists ETFs,
    REITs and the like under "9999", which are not equities of the cross-section."""
    listed = tables["listed_info"]
    outside = listed.filter(~pl.col("Sector33Code").is_in(list(sector_codes)))["Code"].unique()
    if outside.len():
        log.info("jquants: %d codes outside the 33 TSE sectors (ETFs, REITs, ...) left out", outside.len())
    keep = lambda df: df.filter(~pl.col("Code").is_in(outside.implode()))
    return {**tables, "daily_quotes": keep(tables["daily_quotes"]), "listed_info": keep(listed)}
