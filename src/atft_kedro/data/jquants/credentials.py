"""Credentials: from conf/local/credentials.yml or the environment, never shown, never logged."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from atft_kedro.data.jquants.config import JQuantsError

ENV_VARS = {
    "api_key": "JQUANTS_API_KEY",
    "mail_address": "JQUANTS_MAIL_ADDRESS",
    "password": "JQUANTS_PASSWORD",
    "refresh_token": "JQUANTS_REFRESH_TOKEN",
}


class _RedactTokens(logging.Filter):
    """urllib3 logs request lines at DEBUG level, and API v1 sends the refresh token in the query."""

    _pattern = re.compile(r"(refreshtoken=)[^&\s\"]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg, record.args = record.getMessage(), ()
        record.msg = self._pattern.sub(r"\1***", str(record.msg))
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactTokens())


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
