"""The jquants-api-client ``ClientV2`` with our session, rate limit and API v1 sign-in. It overrides
private methods of the package's 2.8 line (pinned in pyproject.toml)."""

from __future__ import annotations

import requests

from atft_kedro.data.jquants.config import BASE_URLS, JQuantsConfig, JQuantsError
from atft_kedro.data.jquants.credentials import JQuantsCredentials
from atft_kedro.data.jquants.retries import RateLimiter, _with_retries


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
