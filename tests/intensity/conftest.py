"""Fixtures for the intensity tests: real HTTP servers on 127.0.0.1 that speak each provider's documented
shapes (errors included) and record what they were asked, plus fast retry settings and fake clocks.

Tests get these through fixtures (pytest runs with --import-mode=importlib, so test modules cannot import
each other or this file).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from greenflow.intensity.providers.http import RetrySettings


@dataclass(frozen=True)
class Reply:
    """One canned HTTP answer. ``body`` wins over ``json``; ``delay`` makes the server slow (timeouts)."""

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Seen:
    """A request the fake server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeAPI:
    """A ThreadingHTTPServer on 127.0.0.1 with regex routes answering queued replies (the last repeats)."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], list[Reply | Callable[[Seen], Reply]]]] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                seen = Seen(
                    method="GET",
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                reply = api._answer(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.body is not None:
                    payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                else:
                    payload = json.dumps(reply.json).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # slow handlers (timeout tests) must not hold up teardown
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, pattern: str, *replies: Reply | Callable[[Seen], Reply]) -> None:
        """Answer paths matching ``pattern`` (full match) with ``replies`` in order; the last one repeats."""
        with self._lock:
            self._routes.append((re.compile(pattern), list(replies)))

    def seen(self, pattern: str = ".*") -> list[Seen]:
        """Requests whose path matches ``pattern``."""
        with self._lock:
            return [r for r in self.requests if re.fullmatch(pattern, r.path)]

    def _answer(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            for pattern, replies in self._routes:
                if pattern.fullmatch(seen.path):
                    reply = replies.pop(0) if len(replies) > 1 else replies[0]
                    break
            else:
                return Reply(404, {"error": {"code": "404", "message": f"no route for {seen.path}"}})
        return reply(seen) if callable(reply) else reply

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api() -> Iterator[Callable[[], FakeAPI]]:
    """Factory for fake API servers, stopped after the test."""
    servers: list[FakeAPI] = []

    def make() -> FakeAPI:
        server = FakeAPI()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def api(fake_api: Callable[[], FakeAPI]) -> FakeAPI:
    """One fake API server."""
    return fake_api()


class SleepRecorder:
    """Stands in for time.sleep in retry settings: records the pauses and sleeps a token amount."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(min(seconds, 0.01))


@pytest.fixture
def sleeps() -> SleepRecorder:
    """The recorder the ``retry`` settings sleep with."""
    return SleepRecorder()


@pytest.fixture
def retry(sleeps: SleepRecorder) -> RetrySettings:
    """Fast retry settings: short timeouts, tiny back-off, recorded sleeps."""
    return RetrySettings(timeout=0.5, total_time=5.0, max_attempts=4, backoff=0.01, backoff_max=0.05, sleep=sleeps)


class FakeClock:
    """A settable aware clock."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2024-05-01T12:00Z."""
    return FakeClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure no GREENFLOW_* provider variable from the machine leaks into a test."""
    for name in (
        "GREENFLOW_UKGRID_URL",
        "GREENFLOW_ELECTRICITYMAPS_URL",
        "GREENFLOW_ELECTRICITYMAPS_TOKEN",
        "GREENFLOW_WATTTIME_URL",
        "GREENFLOW_WATTTIME_USERNAME",
        "GREENFLOW_WATTTIME_PASSWORD",
        "GREENFLOW_CARBON_AWARE_SDK_URL",
        "GREENFLOW_HTTP_TIMEOUT",
        "GREENFLOW_HTTP_TOTAL_TIME",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def reply() -> type[Reply]:
    """The :class:`Reply` class, for building canned answers in tests."""
    return Reply
