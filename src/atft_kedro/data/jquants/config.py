"""What to fetch and how fast: the plan's rate, the API's addresses and endpoints, the date range."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pandas as pd

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
            raise JQuantsError(f"raw.jquants.api_version must be 'v1' or 'v2', got {self.api_version!r}")
        if self.plan not in PLAN_REQUESTS_PER_MINUTE:
            raise JQuantsError(f"raw.jquants.plan must be one of {list(PLAN_REQUESTS_PER_MINUTE)}, got {self.plan!r}")
        if not self.start_date:
            raise JQuantsError(
                "source=jquants needs a date range: set raw.jquants.start_date (and optionally end_date) in "
                "conf/base/parameters_data_engineering.yml or --params raw.jquants.start_date=2021-01-04"
            )
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None and _date(value) is None:
                raise JQuantsError(f"raw.jquants.{name} must be a date (YYYY-MM-DD), got {value!r}")

    @property
    def rate(self) -> float:
        return self.requests_per_minute or PLAN_REQUESTS_PER_MINUTE[self.plan]


def _date(value) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def business_days(cfg: JQuantsConfig, today: dt.date | None = None) -> list[dt.date]:
    today = today or dt.date.today()
    end = _date(cfg.end_date) if cfg.end_date else today - dt.timedelta(days=1)  # both checked when cfg was made
    start = _date(cfg.start_date)
    if end < start:
        raise JQuantsError(f"raw.jquants.end_date {end} is before start_date {start}")
    if end >= today:
        log.info("jquants: dates from %s on are not published yet; fetching up to %s", today, today - dt.timedelta(days=1))
        end = today - dt.timedelta(days=1)
    return [d.date() for d in pd.bdate_range(start, end)]
