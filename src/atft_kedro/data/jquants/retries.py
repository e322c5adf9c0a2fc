"""The plan's rate before every request; HTTP 429, 5xx and dropped connections retried with back-off;
every other answer explained."""

from __future__ import annotations

import logging
import threading
import time

import requests

from atft_kedro.data.jquants.config import JQuantsConfig, JQuantsError

log = logging.getLogger(__name__)

_RETRY_STATUS = {429, 500, 502, 503, 504}


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
            f"J-Quants: {where}. The dates asked for are outside your plan's window: move raw.jquants.start_date "
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
