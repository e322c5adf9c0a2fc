"""source=jquants against a local server answering like J-Quants (recorded answers, a paginated
one, 429 and 500 faults): the package's client and our cache, retries and errors run for real."""

import datetime as dt
import logging
import os
import re
from pathlib import Path

import polars as pl
import pytest

from atft_kedro.data.jquants import (
    JQuantsConfig,
    JQuantsCredentials,
    JQuantsError,
    RateLimiter,
    fetch_jquants,
)
from atft_kedro.data.sources import SourceConfig, load_market
from tests.data.fake_jquants import (
    API_KEY,
    ID_TOKEN,
    MAIL,
    PASSWORD,
    REFRESH_TOKEN,
    SECRETS,
    FakeJQuants,
)
from tests.kedro_process import copy_project, kedro_run

DATES = ["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]  # 01-08 is a holiday: empty answer
V2_CREDS = JQuantsCredentials(api_key=API_KEY)
V1_CREDS = JQuantsCredentials(mail_address=MAIL, password=PASSWORD)


def _cfg(fake: FakeJQuants, cache: Path, **kw) -> JQuantsConfig:
    base = dict(start_date=DATES[0], end_date=DATES[-1], api_version=fake.version, base_url=fake.url,
                cache_dir=str(cache), requests_per_minute=60_000, backoff_s=0.01)  # fmt: skip
    return JQuantsConfig(**{**base, **kw})


def _fetch(cfg, creds, **kw):
    return fetch_jquants(cfg, creds, progress=False, **kw)


@pytest.fixture
def v2():
    with FakeJQuants("v2") as fake:
        yield fake


@pytest.fixture
def v1():
    with FakeJQuants("v1") as fake:
        yield fake


def test_fills_the_cache_and_a_second_run_makes_no_request(v2, tmp_path):
    tables = _fetch(_cfg(v2, tmp_path), V2_CREDS)
    for d in DATES:
        assert (tmp_path / "v2" / "daily_quotes" / f"{d}.parquet").exists()
        assert (tmp_path / "v2" / "topix" / f"{d}.parquet").exists()
    assert (tmp_path / "v2" / "listed_info" / f"{DATES[0]}.parquet").exists()
    # the first date's quotes came in two pages
    assert any("pagination_key" in r["query"] for r in v2.gets("/equities/bars/daily"))
    quotes = tables["daily_quotes"]
    assert quotes.filter(pl.col("Date") == dt.date(2024, 1, 4)).height == 4
    assert quotes["Date"].n_unique() == 3 and dt.date(2024, 1, 8) not in quotes["Date"].to_list()
    assert tables["topix"].height == 3 and tables["listed_info"].height == 4
    assert quotes.columns[:6] == ["Date", "Code", "Open", "High", "Low", "Close"]

    asked = len(v2.requests)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    again = _fetch(_cfg(v2, tmp_path), V2_CREDS)
    assert len(v2.requests) == asked  # nothing asked
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")} == mtimes  # nothing rewritten
    for name in tables:
        assert again[name].equals(tables[name])


def test_v1_and_v2_answers_give_the_same_raw_tables(v1, v2, tmp_path):
    from_v2 = _fetch(_cfg(v2, tmp_path), V2_CREDS)
    from_v1 = _fetch(_cfg(v1, tmp_path), V1_CREDS)
    assert (tmp_path / "v1" / "daily_quotes").is_dir()  # each version caches its own answers
    assert [r["path"] for r in v1.requests[:2]] == ["/v1/token/auth_user", "/v1/token/auth_refresh"]
    for name in from_v2:
        assert from_v1[name].equals(from_v2[name]), name


def test_v1_with_a_refresh_token_skips_the_sign_in(v1, tmp_path):
    _fetch(_cfg(v1, tmp_path), JQuantsCredentials(refresh_token=REFRESH_TOKEN))
    assert "/v1/token/auth_user" not in [r["path"] for r in v1.requests]


def test_429_and_500_are_retried_with_back_off(v2, tmp_path, caplog):
    v2.faults = [429, 500, 503]
    waits = []
    with caplog.at_level(logging.WARNING, logger="atft_kedro.data.jquants"):
        tables = _fetch(_cfg(v2, tmp_path, backoff_s=0.5), V2_CREDS, sleep=waits.append)
    assert [r["status"] for r in v2.requests[:4]] == [429, 500, 503, 200]
    backoff = [w for w in waits if w >= 0.5 or w == 0.0]
    assert backoff[:3] == [0.0, 1.0, 2.0]  # Retry-After: 0 on the 429, then 0.5 * 2**attempt
    assert "HTTP 429, retrying" in caplog.text and "HTTP 500, retrying" in caplog.text
    assert tables["daily_quotes"].height == 12


def test_a_rate_limit_that_never_lifts_is_a_clear_error(v2, tmp_path):
    v2.faults = [429] * 10
    with pytest.raises(JQuantsError, match="too many requests.*Set the right plan"):
        _fetch(_cfg(v2, tmp_path, max_retries=2), V2_CREDS, sleep=lambda s: None)


def test_an_interrupted_run_resumes_where_it_stopped(v2, tmp_path):
    v2.fail_after = 3  # topix + quotes of 01-04 (two pages) answered, then the server fails
    with pytest.raises(JQuantsError, match="run again to resume"):
        _fetch(_cfg(v2, tmp_path, max_retries=1), V2_CREDS, sleep=lambda s: None)
    cached = sorted(p.stem for p in (tmp_path / "v2" / "daily_quotes").glob("*.parquet"))
    assert cached == ["2024-01-04"]
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written file
    v2.fail_after, before = None, len(v2.requests)
    tables = _fetch(_cfg(v2, tmp_path), V2_CREDS)
    second = v2.requests[before:]
    quote_days = [r["query"]["date"] for r in second if r["path"] == "/v2/equities/bars/daily"]
    assert quote_days == ["2024-01-05", "2024-01-08", "2024-01-09"]  # only what was missing
    assert "/v2/indices/bars/daily/topix" not in [r["path"] for r in second]
    assert tables["daily_quotes"]["Date"].n_unique() == 3


def test_a_damaged_cache_file_is_named_with_how_to_fetch_it_again(v2, tmp_path):
    _fetch(_cfg(v2, tmp_path), V2_CREDS)
    damaged = tmp_path / "v2" / "daily_quotes" / f"{DATES[1]}.parquet"
    damaged.write_bytes(damaged.read_bytes()[:40])  # a disk error; the cache's own writes are atomic
    with pytest.raises(JQuantsError, match=rf"cache file {re.escape(str(damaged))} cannot be read .*; delete it and run again to fetch that date anew$"):
        _fetch(_cfg(v2, tmp_path), V2_CREDS)
    before = len(v2.requests)
    damaged.unlink()
    assert _fetch(_cfg(v2, tmp_path), V2_CREDS)["daily_quotes"]["Date"].n_unique() == 3
    assert [r["query"].get("date") for r in v2.requests[before:]] == [DATES[1]]  # that date alone, asked again


def test_missing_credentials_say_where_to_put_them(v2, v1, tmp_path):
    with pytest.raises(JQuantsError, match="conf/local/credentials.yml.*JQUANTS_API_KEY"):
        _fetch(_cfg(v2, tmp_path), JQuantsCredentials())
    with pytest.raises(JQuantsError, match="mail_address.*password"):
        _fetch(_cfg(v1, tmp_path), JQuantsCredentials(mail_address=MAIL))
    assert v2.requests == [] and v1.requests == []


def test_a_wrong_key_is_refused_clearly_without_showing_it(v2, tmp_path):
    with pytest.raises(JQuantsError, match="refused.*credentials are wrong") as err:
        _fetch(_cfg(v2, tmp_path), JQuantsCredentials(api_key="wrong-key-123"))
    assert "wrong-key-123" not in str(err.value)


def test_dates_outside_the_plan_are_a_clear_error(v2, tmp_path):
    v2.plan_start = "2024-01-05"
    with pytest.raises(JQuantsError, match="covers the following dates: 2024-01-05.*outside your plan's window"):
        _fetch(_cfg(v2, tmp_path), V2_CREDS)


def test_configuration_errors():
    with pytest.raises(JQuantsError, match="start_date"):
        JQuantsConfig()
    with pytest.raises(JQuantsError, match="plan"):
        JQuantsConfig(start_date="2024-01-04", plan="gold")
    with pytest.raises(JQuantsError, match=r"^raw.jquants.end_date must be a date \(YYYY-MM-DD\), got '2024-02-30'$"):
        JQuantsConfig(start_date="2024-01-04", end_date="2024-02-30")
    with pytest.raises(JQuantsError, match="unknown keys"):
        JQuantsCredentials.from_sources({"apikey": "x"})


def test_credentials_come_from_the_file_then_the_environment_and_never_show():
    env = {"JQUANTS_API_KEY": "from-env", "JQUANTS_PASSWORD": "env-pass"}
    creds = JQuantsCredentials.from_sources({"api_key": "from-file"}, env)
    assert creds.api_key == "from-file" and creds.password == "env-pass"
    assert "from-file" not in repr(creds) and "env-pass" not in str(creds)


def test_rate_limiter_spaces_requests_evenly():
    now, waits = [0.0], []
    limiter = RateLimiter(120, clock=lambda: now[0], sleep=lambda s: (waits.append(s), now.__setitem__(0, now[0] + s)))
    for _ in range(4):
        limiter.wait()
    assert waits == pytest.approx([0.5, 0.5, 0.5])


def test_credentials_never_appear_in_logs(v1, v2, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):  # every logger, urllib3's request lines included
        _fetch(_cfg(v1, tmp_path), V1_CREDS)
        _fetch(_cfg(v2, tmp_path), V2_CREDS)
    assert "auth_refresh" in caplog.text  # the request lines were logged ...
    for secret in SECRETS:
        assert secret not in caplog.text  # ... without the tokens


def test_load_market_keeps_tse_equities_and_quarantines_untraded_rows(v2, tmp_path):
    cfg = SourceConfig(jquants={**_cfg(v2, tmp_path).__dict__})
    market, oracle = load_market("jquants", cfg, V2_CREDS)
    codes = set(market.daily_quotes["Code"].to_list())
    assert codes == {"13010", "72030", "86970"}  # the ETF (sector 9999) is left out
    assert market.quarantine.filter(pl.col("Code") == "13010")["reason"].to_list() == ["missing Open"]
    assert oracle.is_empty()


def test_kedro_run_reads_credentials_yml_through_the_hook(v2, tmp_path):
    """`kedro run --params source=jquants` in a project copy with conf/local/credentials.yml."""
    project = copy_project(tmp_path)
    (project / "conf" / "local" / "credentials.yml").write_text(f"jquants:\n  api_key: {API_KEY}\n")
    params = f"source=jquants,raw.jquants.start_date={DATES[0]},raw.jquants.end_date={DATES[-1]},raw.jquants.base_url={v2.url},raw.jquants.requests_per_minute=60000"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JQUANTS_")}
    out = kedro_run(project, "--nodes", "load_raw_market", "--params", params, env={**env, "KEDRO_DISABLE_TELEMETRY": "true"}, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert len(list((project / "data/01_raw/jquants/v2/daily_quotes").glob("*.parquet"))) == 4
    quotes = pl.read_parquet(project / "data/02_intermediate/daily_quotes.parquet")
    assert quotes["Code"].n_unique() == 3
    assert API_KEY not in out.stdout + out.stderr and ID_TOKEN not in out.stdout + out.stderr
