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

from atft_kedro.data.jquants.cache import JQuantsCache
from atft_kedro.data.jquants.config import JQuantsConfig, JQuantsError, business_days
from atft_kedro.data.jquants.credentials import JQuantsCredentials
from atft_kedro.data.jquants.fetch import fetch_jquants, tse_equities_only
from atft_kedro.data.jquants.retries import RateLimiter

__all__ = ["JQuantsCache", "JQuantsConfig", "JQuantsCredentials", "JQuantsError", "RateLimiter", "business_days", "fetch_jquants", "tse_equities_only"]
