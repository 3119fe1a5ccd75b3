"""One retrying HTTP session per provider, and the :class:`Secret` wrapper that keeps tokens out of output.

Retries are hand-written rather than urllib3's ``Retry`` because greenflow needs a bound on the *total*
time spent (a waiting task must not hang on a dead provider) and must compare a ``Retry-After`` with that
remaining budget; urllib3 bounds only the number of attempts.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from greenflow import __version__
from greenflow.clock import utcnow
from greenflow.errors import ConfigError, ProviderError
from greenflow.intensity.providers.base import ProviderUnavailable

log = logging.getLogger("greenflow.intensity.http")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDACTED = "***"


class Secret:
    """A token or password: its value is only reachable through :meth:`reveal`.

    ``repr``/``str`` print ``***`` so a secret cannot leak through a log line, an exception or a repr.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class RetrySettings:
    """How hard a provider session tries before giving up.

    ``timeout`` bounds one attempt (connect and each read), ``total_time`` bounds all attempts and the
    sleeps between them. Back-off is exponential with jitter: attempt *n* sleeps a random time in
    [d/2, d] with d = min(backoff_max, backoff * 2**n), or the server's ``Retry-After`` if that is longer.
    """

    timeout: float = 10.0
    total_time: float = 30.0
    max_attempts: int = 6
    backoff: float = 0.5
    backoff_max: float = 10.0
    # Injected so tests can record the sleeps instead of waiting them out.
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("timeout", "total_time", "backoff", "backoff_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or (name != "backoff" and value == 0):
                raise ConfigError(
                    f"retry setting {name}={value!r} is not a positive number",
                    fix="give seconds as a positive number",
                )
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts={self.max_attempts!r} is below 1", fix="give 1 or more attempts")

    @classmethod
    def from_env(cls) -> RetrySettings:
        """Defaults, overridden by ``GREENFLOW_HTTP_TIMEOUT`` and ``GREENFLOW_HTTP_TOTAL_TIME`` (seconds)."""
        values: dict[str, Any] = {}
        for name, env in (("timeout", "GREENFLOW_HTTP_TIMEOUT"), ("total_time", "GREENFLOW_HTTP_TOTAL_TIME")):
            raw = os.environ.get(env, "").strip()
            if raw:
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise ConfigError(f"{env}={raw!r} is not a number", fix="give seconds, e.g. 30") from None
        return cls(**values)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to sleep before attempt ``attempt + 1`` (0-based ``attempt`` just failed)."""
        ceiling = min(self.backoff_max, self.backoff * (2**attempt))
        jittered = random.uniform(ceiling / 2, ceiling)
        return max(jittered, retry_after or 0.0)


class ProviderSession:
    """A ``requests.Session`` for one provider: retries, bounded total time, redaction of secrets.

    Thread-safe for concurrent ``get`` calls: each call keeps its own attempt state.
    """

    def __init__(self, provider: str, base_url: str, settings: RetrySettings | None = None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/") + "/"
        self.settings = settings or RetrySettings.from_env()
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"greenflow/{__version__}"
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ProviderSession(provider={self.provider!r}, base_url={self.base_url!r})"

    def add_secret(self, value: str | Secret | None) -> None:
        """Register a value that must be replaced by ``***`` in every message this session writes."""
        raw = value.reveal() if isinstance(value, Secret) else value
        if raw:
            with self._lock:
                self._secrets.add(raw)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` under the base URL."""
        return self.base_url + path.lstrip("/")

    def get(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        """GET ``path``, retrying network errors, timeouts, 429 and 5xx within the time budget.

        Returns the response for any other status (the provider maps 4xx to its own errors); raises
        :class:`ProviderUnavailable` once the budget or the attempts are spent.
        """
        url = self.url(path)
        settings = self.settings
        deadline = time.monotonic() + settings.total_time
        last_problem = "no attempt made"
        for attempt in range(settings.max_attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            per_try = min(settings.timeout, remaining)
            retry_after: float | None = None
            try:
                response = self._session.get(
                    url, params=params, headers=dict(headers or {}), auth=auth, timeout=(per_try, per_try)
                )
            except requests.Timeout:
                last_problem = f"timed out after {per_try:.3g} s"
            except requests.ConnectionError as exc:
                last_problem = f"connection failed ({type(exc).__name__})"
            except requests.RequestException as exc:
                raise ProviderError(
                    f"{self.provider} request to {self._shown(url, params)} failed: {self.redact(str(exc))}",
                    fix="check the provider's base URL",
                ) from None
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    log.debug("%s GET %s -> %s", self.provider, self._shown(url, params), response.status_code)
                    return response
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                last_problem = f"HTTP {response.status_code}" + (
                    f" (Retry-After {retry_after:.3g} s)" if retry_after is not None else ""
                )
            if attempt + 1 >= settings.max_attempts:
                break
            pause = settings.delay(attempt, retry_after)
            if time.monotonic() + pause >= deadline:
                # Sleeping past the budget only to fail later helps nobody: give up now and say why.
                last_problem += f"; next retry in {pause:.3g} s would exceed the {settings.total_time:.3g} s budget"
                break
            log.warning(
                "%s GET %s: %s; retry %d in %.2f s",
                self.provider,
                self._shown(url, params),
                last_problem,
                attempt + 1,
                pause,
            )
            settings.sleep(pause)
        raise ProviderUnavailable(
            f"{self.provider} unreachable at {self._shown(url, params)}: {last_problem}",
            fix="check the network and the provider's status; the outage policy decides what runs meanwhile",
        )

    def json(self, response: requests.Response) -> Any:
        """The response body as JSON, or :class:`ProviderError` naming the provider and URL."""
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            snippet = self.redact(response.text[:80]).replace("\n", " ")
            raise ProviderError(
                f"{self.provider} returned malformed JSON (HTTP {response.status_code}) from "
                f"{self.redact(response.url)}: {snippet!r}",
                fix="check the base URL points at the provider's API; retry later if it is having trouble",
            ) from None

    def shown_url(self, response: requests.Response) -> str:
        """The URL a response came from, safe to show."""
        return self.redact(response.url)

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def _shown(self, url: str, params: Mapping[str, Any] | None) -> str:
        prepared = requests.Request("GET", url, params=params).prepare().url or url
        return self.redact(prepared)


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())


def error_message(session: ProviderSession, response: requests.Response) -> str:
    """A short, redacted description of an error response (the API's message when it gives one)."""
    detail = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "title"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("code")
            if value:
                detail = str(value)
                break
    if not detail:
        detail = response.text[:120].strip()
    text = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
    return session.redact(text.replace("\n", " "))
