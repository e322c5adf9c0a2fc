"""The J-Quants source (SPEC section 1): daily quotes, listed info and TOPIX through the
``jquants-api-client`` package, fetched by date for all stocks and cached as immutable files.

Cache layout: ``{cache_dir}/{api_version}/{table}/{YYYY-MM-DD}.parquet``, one file per endpoint and
date holding the API's answer as it came (its own column names). A file is written once, atomically
(temporary file + rename), and never rewritten: a second run reads it instead of asking the API, and an
interrupted run resumes at the first date without a file. Holidays are cached as empty files, so they
are asked once. v2 short column names are mapped to the v1 names of the raw contract when the cache
is read.

HTTP: the package's ``ClientV2`` does the requests (its session, pagination over ``pagination_key``
and error reporting). API v1 (e-mail and password -> refresh token -> ID token) reuses the same
client with the v1 base address and bearer header, since the package's 2.x line no longer ships a v1
client and its 1.x line pins numpy < 2. Every request first waits for the plan's rate limit; HTTP 429
and 5xx answers and dropped connections are retried with exponential back-off (``Retry-After`` when the
server sends one). Credentials are held in ``JQuantsCredentials``, whose repr hides them; they are
never logged and never written anywhere.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl
import requests
from tqdm.auto import tqdm

from atft_kedro.atomic import atomic_file
from atft_kedro.data.schema import (
    LISTED_COLUMNS,
    LISTED_OPTIONAL,
    QUOTES_COLUMNS,
    QUOTES_OPTIONAL,
    TOPIX_COLUMNS,
    to_v1_names,
)

log = logging.getLogger(__name__)

PLAN_REQUESTS_PER_MINUTE = {"free": 5, "light": 60, "standard": 120, "premium": 500}
BASE_URLS = {"v1": "https://api.jquants.com/v1", "v2": "https://api.jquants.com/v2"}
# table -> (path, key of the records in the JSON answer), per API version
ENDPOINTS = {
    "v1": {"daily_quotes": ("/prices/daily_quotes", "daily_quotes"), "listed_info": ("/listed/info", "info"),
           "topix": ("/indices/topix", "topix")},
    "v2": {"daily_quotes": ("/equities/bars/daily", "data"), "listed_info": ("/equities/master", "data"),
           "topix": ("/indices/bars/daily/topix", "data")},
}  # fmt: skip
CONTRACT = {
    "daily_quotes": [*QUOTES_COLUMNS, *QUOTES_OPTIONAL],
    "listed_info": [*LISTED_COLUMNS, *LISTED_OPTIONAL],
    "topix": list(TOPIX_COLUMNS),
}
ENV_VARS = {
    "api_key": "JQUANTS_API_KEY",
    "mail_address": "JQUANTS_MAIL_ADDRESS",
    "password": "JQUANTS_PASSWORD",
    "refresh_token": "JQUANTS_REFRESH_TOKEN",
}
_RETRY_STATUS = {429, 500, 502, 503, 504}


class _RedactTokens(logging.Filter):
    """urllib3 logs request lines at DEBUG level, and API v1 sends the refresh token in the query."""

    _pattern = re.compile(r"(refreshtoken=)[^&\s\"]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg, record.args = record.getMessage(), ()
        record.msg = self._pattern.sub(r"\1***", str(record.msg))
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactTokens())


class JQuantsError(RuntimeError):
    """The J-Quants source cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class JQuantsConfig:
    start_date: str | None = None  # first date to fetch (YYYY-MM-DD)
    end_date: str | None = None  # last date (default: yesterday)
    api_version: str = "v2"  # v2: API key | v1: e-mail + password or refresh token
    plan: str = "free"  # free | light | standard | premium: sets the request rate
    requests_per_minute: float | None = None  # overrides the plan's rate
    listed_info_every: int = 20  # a listed_info snapshot every n-th business day (and the first)
    cache_dir: str = "data/01_raw/jquants"
    max_retries: int = 6  # per request, on HTTP 429 / 5xx / dropped connection
    backoff_s: float = 2.0  # first wait; doubles each retry (capped at 5 minutes)
    timeout_s: float = 30.0
    base_url: str | None = None  # the API's address (default: J-Quants' own for api_version)

    def __post_init__(self):
        if self.api_version not in ENDPOINTS:
            raise JQuantsError(f"jquants.api_version must be 'v1' or 'v2', got {self.api_version!r}")
        if self.plan not in PLAN_REQUESTS_PER_MINUTE:
            raise JQuantsError(f"jquants.plan must be one of {list(PLAN_REQUESTS_PER_MINUTE)}, got {self.plan!r}")
        if not self.start_date:
            raise JQuantsError(
                "source=jquants needs a date range: set jquants.start_date (and optionally end_date) in "
                "conf/base/parameters_data_engineering.yml or --params jquants.start_date=2021-01-04"
            )

    @property
    def rate(self) -> float:
        return self.requests_per_minute or PLAN_REQUESTS_PER_MINUTE[self.plan]


@dataclass(frozen=True, repr=False)
class JQuantsCredentials:
    api_key: str | None = None
    mail_address: str | None = None
    password: str | None = None
    refresh_token: str | None = None

    def __repr__(self) -> str:  # never shows a secret
        given = [k for k in ENV_VARS if getattr(self, k)]
        return f"JQuantsCredentials(given={given})"

    __str__ = __repr__

    @classmethod
    def from_sources(cls, conf: dict | None, environ=os.environ) -> JQuantsCredentials:
        """``conf`` (the ``jquants`` entry of conf/local/credentials.yml) first, then environment variables."""
        conf = dict(conf or {})
        unknown = set(conf) - set(ENV_VARS)
        if unknown:
            raise JQuantsError(f"credentials.yml: unknown keys under 'jquants': {sorted(unknown)}; use {list(ENV_VARS)}")
        return cls(**{k: conf.get(k) or environ.get(var) or None for k, var in ENV_VARS.items()})

    def check(self, api_version: str) -> None:
        if api_version == "v2" and not self.api_key:
            raise JQuantsError(
                "source=jquants (API v2) needs an API key: put `jquants: {api_key: ...}` in "
                "conf/local/credentials.yml or set JQUANTS_API_KEY (the key is on your J-Quants dashboard)"
            )
        if api_version == "v1" and not (self.refresh_token or (self.mail_address and self.password)):
            raise JQuantsError(
                "source=jquants (API v1) needs `jquants: {mail_address: ..., password: ...}` or "
                "`{refresh_token: ...}` in conf/local/credentials.yml, or JQUANTS_MAIL_ADDRESS + "
                "JQUANTS_PASSWORD / JQUANTS_REFRESH_TOKEN in the environment"
            )


class RateLimiter:
    """At most ``per_minute`` requests per minute, evenly spaced."""

    def __init__(self, per_minute: float, clock=time.monotonic, sleep=time.sleep):
        self.interval = 60.0 / per_minute
        self._clock, self._sleep, self._next = clock, sleep, 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            if self._next > now:
                self._sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


def _client_class():
    try:
        from jquantsapi import ClientV2
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise JQuantsError("source=jquants needs the jquants-api-client package: pip install 'jquants-api-client>=2.8'") from e

    class Client(ClientV2):
        """The package's client with our session (no hidden retries: we retry with back-off), the
        rate limiter before every request, and for API v1 the bearer ID token instead of the key."""

        def __init__(self, cfg: JQuantsConfig, credentials: JQuantsCredentials, limiter: RateLimiter):
            self.JQUANTS_API_BASE = (cfg.base_url or BASE_URLS[cfg.api_version]).rstrip("/")
            self._cfg, self._limiter, self._bearer = cfg, limiter, None
            self._our_session = requests.Session()
            if cfg.api_version == "v1":
                super().__init__(api_key="(v1 uses an ID token)")
                self._bearer = self._v1_id_token(credentials)
            else:
                super().__init__(api_key=credentials.api_key)

        def _request_session(self, *args, **kwargs) -> requests.Session:
            return self._our_session

        def _base_headers(self) -> dict[str, str]:
            headers = super()._base_headers()
            if self._bearer is not None:
                del headers["x-api-key"]
                headers["Authorization"] = f"Bearer {self._bearer}"
            return headers

        def _get(self, url, params=None):
            self._limiter.wait()
            return super()._get(url, params=params)

        def _post_json(self, url: str, **kwargs) -> dict:
            self._limiter.wait()
            resp = self._our_session.post(url, timeout=self._cfg.timeout_s, **kwargs)
            self._raise_for_status(resp)
            return resp.json()

        def _v1_id_token(self, credentials: JQuantsCredentials) -> str:
            refresh = credentials.refresh_token
            if not refresh:
                answer = _with_retries(self._cfg, "v1 sign-in", lambda: self._post_json(
                    f"{self.JQUANTS_API_BASE}/token/auth_user",
                    json={"mailaddress": credentials.mail_address, "password": credentials.password}))  # fmt: skip
                refresh = answer["refreshToken"]
            answer = _with_retries(self._cfg, "v1 ID token", lambda: self._post_json(
                f"{self.JQUANTS_API_BASE}/token/auth_refresh", params={"refreshtoken": refresh}))  # fmt: skip
            return answer["idToken"]

    return Client


def _explain(status: int, message: str, what: str, cfg: JQuantsConfig) -> JQuantsError:
    where = f"{what}: HTTP {status}: {message}"
    if status in (401, 403):
        return JQuantsError(
            f"J-Quants refused {where}. Either the credentials are wrong (check conf/local/credentials.yml "
            f"or the JQUANTS_* environment variables; api_version is {cfg.api_version}) or your plan does not "
            "include this data (TOPIX needs the Light plan or above)."
        )
    if status == 400 and "subscription" in message.lower():
        return JQuantsError(
            f"J-Quants: {where}. The dates asked for are outside your plan's window: move jquants.start_date "
            "/ end_date inside it (the message above gives the window)."
        )
    if status == 429:
        return JQuantsError(
            f"J-Quants kept answering 'too many requests' for {what} after {cfg.max_retries} retries: your "
            f"plan's limit is lower than jquants.plan={cfg.plan} ({cfg.rate:g}/min) says, or the API has "
            "blocked the key for a few minutes. Set the right plan (or requests_per_minute) and run again: "
            "dates already fetched are kept."
        )
    return JQuantsError(f"J-Quants: {where}. Dates already fetched are kept; run again to resume.")


def _with_retries(cfg: JQuantsConfig, what: str, call, sleep=time.sleep):
    for attempt in range(cfg.max_retries + 1):
        try:
            return call()
        except requests.HTTPError as e:
            resp = e.response
            status = resp.status_code if resp is not None else 0
            try:
                message = resp.json().get("message", resp.text)
            except ValueError:
                message = resp.text if resp is not None else str(e)
            if status not in _RETRY_STATUS or attempt == cfg.max_retries:
                raise _explain(status, message, what, cfg) from None
            retry_after = resp.headers.get("Retry-After") if resp is not None else None
            reason = f"HTTP {status}"
        except (requests.ConnectionError, requests.Timeout) as e:
            if attempt == cfg.max_retries:
                raise JQuantsError(f"J-Quants unreachable for {what}: {type(e).__name__}; dates already fetched are kept") from None
            retry_after, reason = None, type(e).__name__
        wait = min(float(retry_after) if retry_after and retry_after.isdigit() else cfg.backoff_s * 2**attempt, 300.0)
        log.warning("%s: %s, retrying in %.1f s (%d/%d)", what, reason, wait, attempt + 1, cfg.max_retries)
        sleep(wait)


def business_days(cfg: JQuantsConfig, today: dt.date | None = None) -> list[dt.date]:
    today = today or dt.date.today()
    end = pd.Timestamp(cfg.end_date).date() if cfg.end_date else today - dt.timedelta(days=1)
    start = pd.Timestamp(cfg.start_date).date()
    if end < start:
        raise JQuantsError(f"jquants.end_date {end} is before start_date {start}")
    if end >= today:
        log.info("jquants: dates from %s on are not published yet; fetching up to %s", today, today - dt.timedelta(days=1))
        end = today - dt.timedelta(days=1)
    return [d.date() for d in pd.bdate_range(start, end)]


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
        raise JQuantsError(f"J-Quants returned no {table} rows for the dates asked for; check jquants.start_date / end_date")
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

