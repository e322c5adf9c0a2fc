"""A local HTTP server that answers like J-Quants (v1 and v2) from recorded answers in
tests/fixtures/jquants/{v1,v2}.json, so the real client code path (jquants-api-client's session,
pagination and error handling, our retries and cache) runs offline.

Knobs for the tests: ``faults`` (statuses answered to the next GET requests, e.g. [429, 500]),
``fail_after`` (every GET after that many answers gets a 500: a run that dies midway), ``plan_start``
(dates before it get J-Quants' "outside your subscription" 400), and ``requests`` (what was asked)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jquants"
API_KEY = "test-api-key-3f9a"
MAIL, PASSWORD = "quant@example.com", "test-password-77c1"
REFRESH_TOKEN, ID_TOKEN = "test-refresh-token-a1b2", "test-id-token-c3d4"
SECRETS = (API_KEY, PASSWORD, REFRESH_TOKEN, ID_TOKEN)


class FakeJQuants:
    def __init__(self, version: str):
        self.version = version
        self.answers = json.loads((FIXTURES / f"{version}.json").read_text())
        self.faults: list[int] = []
        self.fail_after: int | None = None
        self.plan_start: str | None = None
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # a short poll: shutdown() waits for the loop to look, up to half a second with the default
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self.version}"

    def gets(self, path_part: str = "") -> list[dict]:
        return [r for r in self.requests if r["method"] == "GET" and path_part in r["path"]]

    def __enter__(self) -> FakeJQuants:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the answers
    def _answer(self, method: str, path: str, query: dict, headers) -> tuple[int, dict, dict]:
        path = path.removeprefix(f"/{self.version}")
        if method == "POST":
            return self._token(path, query)
        if self.version == "v2" and headers.get("x-api-key") != API_KEY:
            return 403, {"message": "Forbidden"}, {}
        if self.version == "v1" and headers.get("Authorization") != f"Bearer {ID_TOKEN}":
            return 401, {"message": "The incoming token is invalid or expired."}, {}
        n_gets = len(self.gets())
        if self.faults:
            status = self.faults.pop(0)
            return status, {"message": "Too Many Requests" if status == 429 else "Internal Server Error"}, {"Retry-After": "0"} if status == 429 else {}
        if self.fail_after is not None and n_gets >= self.fail_after:
            return 500, {"message": "Internal Server Error"}, {}
        date = query.get("date") or query.get("from")
        if self.plan_start and date and date < self.plan_start:
            return 400, {"message": f"Your subscription covers the following dates: {self.plan_start} ~ . "
                                    "If you want more data, please check other plans."}, {}  # fmt: skip
        if path in self.answers and isinstance(self.answers[path], dict):  # ranged: the index
            key, rows = next(iter(self.answers[path].items()))
            lo, hi = query.get("from", "0000"), query.get("to", "9999")
            return 200, {key: [r for r in rows if lo <= r["Date"] <= hi]}, {}
        pages = self.answers.get(f"{path}?date={query.get('date')}")
        if pages is None:
            return 400, {"message": "This API requires at least 1 parameter as follows; 'date','code'."}, {}
        page = 1 if query.get("pagination_key", "").startswith("page2") else 0
        return 200, pages[page], {}

    def _token(self, path: str, query: dict) -> tuple[int, dict, dict]:
        if path == "/token/auth_user":
            body = self._last_body
            ok = body.get("mailaddress") == MAIL and body.get("password") == PASSWORD
            return (200, {"refreshToken": REFRESH_TOKEN}, {}) if ok else (400, {"message": "'mailaddress' or 'password' is incorrect."}, {})
        if path == "/token/auth_refresh":
            ok = query.get("refreshtoken") == REFRESH_TOKEN
            return (200, {"idToken": ID_TOKEN}, {}) if ok else (400, {"message": "'refreshtoken' is incorrect."}, {})
        return 404, {"message": "not found"}, {}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake._last_body = json.loads(body) if body else {}
                    status, payload, extra = fake._answer(method, url.path, query, self.headers)
                    fake.requests.append({"method": method, "path": url.path, "query": query, "status": status})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):  # quiet
                pass

        return Handler
