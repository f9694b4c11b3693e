"""The shared HTTP layer on its own: rate limiter, redaction, classification, Retry-After,
bearer-token refresh and the hooks the Spotify client builds on."""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from music_platform.sources.errors import (
    AuthenticationExpiredError,
    CapabilityUnavailableError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ResponseFormatError,
    SourceError,
    TransientSourceError,
)
from music_platform.sources.http import (
    ApiKeyAuth,
    BearerTokenAuth,
    HttpClient,
    RateLimiter,
    Redactor,
    ResponseInfo,
    RetryPolicy,
    Timeouts,
    classify_status,
    parse_retry_after,
    shared_rate_limiter,
    url_without_query,
)

FAST = RetryPolicy(max_attempts=4, deadline_s=10, initial_backoff_s=0.01, max_backoff_s=0.02, jitter_s=0.0)


class ScriptedServer:
    """Answers each request with the next scripted (status, headers, body); then 200 {"ok": true}."""

    def __init__(self, script=()):
        self.script = deque(script)
        self.seen: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                outer.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, headers, payload = outer.script.popleft() if outer.script else (200, {}, {"ok": True})
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer  # noqa: N815 - stdlib name
            do_POST = _answer  # noqa: N815 - stdlib name

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _client(url: str, **kwargs) -> HttpClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeouts", Timeouts(connect_s=1, read_s=2))
    return HttpClient(source="test", label="Test API", base_url=url, **kwargs)


# -- rate limiter ----------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_requests_evenly():
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(11):
        limiter.acquire()
        starts.append(clock.now)
    assert starts[1] - starts[0] == pytest.approx(0.2)
    assert starts[-1] - starts[0] == pytest.approx(2.0)
    assert max(sum(1 for s in starts if a <= s < a + 1.0) for a in starts) == 5


def test_rate_limiter_burst_and_idle_refill():
    clock = FakeClock()
    limiter = RateLimiter(2, burst=3, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire() == pytest.approx(0.5)
    clock.now += 10  # idle: the bucket refills, but not beyond its burst
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire() > 0


def test_rate_limiter_margin_and_validation():
    clock = FakeClock()
    limiter = RateLimiter(5, margin_s=0.01, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(0.21)
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(1, burst=0)


def test_rate_limiter_is_shared_by_threads():
    limiter = RateLimiter(50)
    starts: list[float] = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    # One bucket for all threads: 20 slots 20 ms apart take 380 ms; four separate buckets would take 80 ms.
    assert len(starts) == 20 and starts[-1] - starts[0] >= 0.37


def test_shared_rate_limiter_per_name_and_rate():
    a = shared_rate_limiter("test-api-x", 5)
    assert shared_rate_limiter("test-api-x", 5) is a
    assert shared_rate_limiter("test-api-y", 5) is not a


# -- redaction ------------------------------------------------------------------------------------------------


def test_redactor_removes_known_secrets_and_credential_params():
    redact = Redactor(["s3cr3t-value"])
    text = "GET https://x/?api_key=abc123&user=rj token=zzz Authorization: Bearer BQCabcdefghijkl s3cr3t-value"
    out = redact(text)
    assert "abc123" not in out and "zzz" not in out and "BQCabcdefghijkl" not in out and "s3cr3t-value" not in out
    assert "user=rj" in out
    assert url_without_query("https://u:p@host/2.0/?api_key=k") == "https://host/2.0/"


# -- classification ----------------------------------------------------------------------------------------------


def _info(status, payload=None, headers=None, retry_after=None):
    return ResponseInfo(
        source="test",
        operation="op",
        status=status,
        headers=headers or {},
        payload=payload,
        snippet="snippet",
        content_type="text/html",
        context={},
        retry_after=retry_after,
        label="Test API",
    )


@pytest.mark.parametrize(
    ("status", "payload", "error_type", "retryable"),
    [
        (200, {"ok": 1}, None, None),
        (200, None, ResponseFormatError, True),
        (429, None, RateLimitedError, True),
        (500, None, TransientSourceError, True),
        (502, None, TransientSourceError, True),
        (401, {"error": {}}, AuthenticationExpiredError, False),
        (404, {}, NotFoundError, False),
        (400, {}, InvalidRequestError, False),
    ],
)
def test_classify_status(status, payload, error_type, retryable):
    error = classify_status(_info(status, payload))
    if error_type is None:
        assert error is None
    else:
        assert isinstance(error, error_type) and error.retryable is retryable


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


# -- behaviour against a server -----------------------------------------------------------------------------------


def test_retry_after_is_honoured_within_the_cap():
    with ScriptedServer([(429, {"Retry-After": "0.3"}, {"error": {"status": 429}})]) as server:
        started = time.monotonic()
        assert _client(server.url).request_json("GET", "tracks") == {"ok": True}
        assert time.monotonic() - started >= 0.29
        assert len(server.seen) == 2


def test_retry_after_beyond_the_cap_fails_at_once_for_failover():
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.01, retry_after_cap_s=60)
    with ScriptedServer([(429, {"Retry-After": "3600"}, {"error": {"status": 429}})]) as server:
        with pytest.raises(RateLimitedError) as info:
            _client(server.url, retry=policy).request_json("GET", "tracks")
        assert info.value.retry_after == 3600 and len(server.seen) == 1
        assert "cap" in str(info.value)


def test_non_json_success_and_html_errors_are_retried():
    script = [
        (200, {"Content-Type": "text/html"}, "<html>oops</html>"),
        (503, {"Content-Type": "text/html"}, "<html/>"),
    ]
    with ScriptedServer(script) as server:
        assert _client(server.url).request_json("GET") == {"ok": True}
        assert len(server.seen) == 3


def test_bearer_token_is_refreshed_once_on_401():
    issued = iter(["token-one-aaaaaaaa", "token-two-bbbbbbbb", "token-three-cccc"])
    auth = BearerTokenAuth(lambda: (next(issued), 3600), extra_secrets=["client-secret-xyz"])
    with ScriptedServer([(401, {}, {"error": {"status": 401, "message": "The access token expired"}})]) as server:
        assert _client(server.url, auth=auth).request_json("GET", "tracks/1") == {"ok": True}
        assert [s["auth"] for s in server.seen] == ["Bearer token-one-aaaaaaaa", "Bearer token-two-bbbbbbbb"]
        assert auth.fetch_count == 2


def test_bearer_token_second_401_is_final_and_redacted():
    tokens = iter(["tok-AAAAAAAAAAAA", "tok-BBBBBBBBBBBB"])
    auth = BearerTokenAuth(lambda: (next(tokens), 3600))
    body = {"error": {"status": 401, "message": "Invalid access token tok-BBBBBBBBBBBB"}}
    with ScriptedServer([(401, {}, body), (401, {}, body)]) as server:
        with pytest.raises(AuthenticationExpiredError) as info:
            _client(server.url, auth=auth).request_json("GET", "tracks/1")
        assert len(server.seen) == 2
        assert "tok-BBBBBBBBBBBB" not in str(info.value) and "tok-AAAAAAAAAAAA" not in str(info.value)


def test_bearer_token_renewed_before_expiry():
    clock = FakeClock()
    tokens = iter(["first-token-xxxx", "second-token-yyy"])
    auth = BearerTokenAuth(lambda: (next(tokens), 120), refresh_margin_s=60, clock=clock)
    assert auth.token() == "first-token-xxxx"
    clock.now += 30
    assert auth.token() == "first-token-xxxx"
    clock.now += 31  # 59 s left: inside the margin
    assert auth.token() == "second-token-yyy"


def test_capability_unavailable_hook_is_not_retried():
    """A Spotify-style classifier: 403 on a withdrawn endpoint is permanent, not transient."""

    def classify(info: ResponseInfo) -> SourceError | None:
        if info.status == 403:
            return CapabilityUnavailableError(f"{info.label} {info.operation}: endpoint not available to this app")
        return classify_status(info)

    with ScriptedServer([(403, {}, {"error": {"status": 403}})]) as server:
        with pytest.raises(CapabilityUnavailableError):
            _client(server.url, classify=classify).request_json("GET", "audio-features", operation="audio-features")
        assert len(server.seen) == 1


def test_api_key_in_query_is_redacted_on_connection_errors(caplog):
    caplog.set_level(logging.DEBUG)
    secret = "query-key-0123456789abcdef"
    with ScriptedServer() as server:
        url = server.url
    client = _client(
        url, auth=ApiKeyAuth(secret), retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01, jitter_s=0)
    )
    with pytest.raises(TransientSourceError) as info:
        client.request_json("GET", params={"method": "x"})
    text = "".join(traceback.format_exception(info.value)) + caplog.text
    assert secret not in text
    assert info.value.attempts == 2 and "cannot reach" in str(info.value)


def test_api_key_goes_in_the_form_body_for_post():
    secret = "form-key-0123456789abcdef"
    with ScriptedServer() as server:
        _client(server.url, auth=ApiKeyAuth(secret)).request_json("POST", data={"method": "x"})
        assert secret not in server.seen[0]["path"] and f"api_key={secret}" in server.seen[0]["body"]


def test_errors_survive_pickling():
    import pickle

    error = RateLimitedError("slow down", retry_after=5, source="spotify", status=429, operation="GET /tracks")
    error.attempts = 3
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is RateLimitedError and clone.retry_after == 5 and clone.status == 429 and clone.attempts == 3
    assert str(clone) == "slow down"


def test_the_lastfm_client_bounds_arrivals_by_default_one_limiter_per_api_and_rate():
    from music_platform.sources.http import AnsweredWindowLimiter, shared_answered_limiter
    from music_platform.sources.lastfm.client import LastfmClient

    first = LastfmClient(api_key="k", api_root="http://127.0.0.1:9/2.0/", rate_limit_per_s=5.0)
    second = LastfmClient(api_key="k", api_root="http://127.0.0.1:9/2.0/", rate_limit_per_s=5.0)
    limiter = first.http.rate_limiter
    assert isinstance(limiter, AnsweredWindowLimiter) and limiter is second.http.rate_limiter
    assert (limiter.max_requests, limiter.window_s) == (5, 1.0)
    slower = shared_answered_limiter("lastfm:test", 2.5)  # a fractional rate: 2 in any 0.8 s
    assert (slower.max_requests, slower.window_s) == (2, 0.8)
    with pytest.raises(ValueError, match="rate_per_s"):
        shared_answered_limiter("lastfm:test", 0.0)
