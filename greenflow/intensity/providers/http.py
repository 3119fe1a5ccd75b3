"""One retrying HTTP session per provider, and the :class:`Secret` wrapper that keeps tokens out of output.

Retries are tenacity's (attempts, a bound on the *total* time, jittered exponential back-off) rather than
urllib3's ``Retry``, which bounds only the number of attempts: a waiting task must not hang on a dead
provider, and a ``Retry-After`` longer than the remaining budget fails at once instead of sleeping first.

Redirects are followed only on the configured host, so no credential (a header such as Electricity
Maps' ``auth-token``, Basic auth, a bearer token) ever reaches another host.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from greenflow import __version__
from greenflow.clock import utcnow
from greenflow.errors import ConfigError, ProviderError
from greenflow.intensity.providers.base import ProviderDataError, ProviderRedirectRefused, ProviderUnavailable

if TYPE_CHECKING:
    from tenacity import RetryCallState

log = logging.getLogger("greenflow.intensity.http")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
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


class _Transient(Exception):
    """One attempt failed in a way another attempt may not (network, timeout, 429, 5xx)."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


class _Budget:
    """tenacity's stop: after ``max_attempts``, or when the next pause would end past ``total_time``.

    Remembers the pause it refused, so the error can say why it gave up before the attempts ran out.
    """

    def __init__(self, settings: RetrySettings) -> None:
        self._settings = settings
        self.pause_refused: float | None = None

    def __call__(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self._settings.max_attempts:
            return True
        elapsed = state.seconds_since_start or 0.0
        if elapsed + state.upcoming_sleep >= self._settings.total_time:
            self.pause_refused = state.upcoming_sleep
            return True
        return False


def _wait_for(settings: RetrySettings) -> Callable[[RetryCallState], float]:
    """tenacity's wait: jittered exponential back-off, or the server's ``Retry-After`` if longer."""

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        retry_after = failure.retry_after if isinstance(failure, _Transient) else None
        return settings.delay(state.attempt_number - 1, retry_after)

    return wait


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (what a redirect refusal shows: no path, no query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def same_host(base_url: str, target: str) -> bool:
    """Whether ``target`` is on the configured host of ``base_url``, where credentials may go.

    The same scheme, host name (compared as written, case-insensitively: ``localhost`` and ``127.0.0.1``
    are different hosts) and port; or an upgrade from http to https of the same host name with default
    ports, which requests also allows. Anything else, a downgrade to http included, is another host.
    """
    base, new = urlsplit(base_url), urlsplit(target)
    if not new.hostname or not base.hostname or new.hostname.lower() != base.hostname.lower():
        return False
    try:
        base_port = base.port or _DEFAULT_PORTS.get(base.scheme)
        new_port = new.port or _DEFAULT_PORTS.get(new.scheme)
    except ValueError:  # a port that is not a number
        return False
    if base.scheme == new.scheme:
        return base_port == new_port
    return (base.scheme, base_port, new.scheme, new_port) == ("http", 80, "https", 443)


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
        :class:`ProviderUnavailable` once the budget or the attempts are spent, and
        :class:`ProviderRedirectRefused` when the provider redirects to another host (see :meth:`_send`).
        """
        # Imported here: tenacity costs ~80 ms to import (it loads asyncio, and tornado when installed),
        # which a `greenflow run` that never asks a provider (nothing to plan) should not pay.
        from tenacity import Retrying, retry_if_exception_type

        url = self.url(path)
        settings = self.settings
        shown = self._shown(url, params)
        budget = _Budget(settings)
        retrying = Retrying(
            stop=budget,
            wait=_wait_for(settings),
            retry=retry_if_exception_type(_Transient),
            sleep=settings.sleep,
            before_sleep=lambda state: self._log_retry(shown, state),
            reraise=True,
        )
        response: requests.Response | None = None
        try:
            for attempt in retrying:
                with attempt:
                    # tenacity's clock (monotonic) started with the first attempt: bound this one by what is left.
                    elapsed = time.monotonic() - attempt.retry_state.start_time
                    per_try = max(min(settings.timeout, settings.total_time - elapsed), 0.001)
                    response = self._attempt(url, params, headers, auth, per_try, shown)
        except _Transient as failure:
            problem = failure.problem
            if budget.pause_refused is not None:
                # Sleeping past the budget only to fail later helps nobody: give up now and say why.
                problem += (
                    f"; next retry in {budget.pause_refused:.3g} s would exceed the {settings.total_time:.3g} s budget"
                )
            raise ProviderUnavailable(
                f"{self.provider} unreachable at {shown}: {problem}",
                fix="check the network and the provider's status; the outage policy decides what runs meanwhile",
            ) from None
        assert response is not None  # tenacity returns only after an attempt succeeded
        log.debug("%s GET %s -> %s", self.provider, shown, response.status_code)
        return response

    def _attempt(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        per_try: float,
        shown: str,
    ) -> requests.Response:
        """One attempt (redirects on the configured host included); :class:`_Transient` if worth retrying."""
        try:
            response = self._send(url, params, headers, auth, per_try)
        except requests.Timeout:
            raise _Transient(f"timed out after {per_try:.3g} s") from None
        except requests.ConnectionError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise ProviderError(
                f"{self.provider} request to {shown} failed: {self.redact(str(exc))}",
                fix="check the provider's base URL",
            ) from None
        if response.status_code in RETRYABLE_STATUSES:
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            raise _Transient(
                f"HTTP {response.status_code}"
                + (f" (Retry-After {retry_after:.3g} s)" if retry_after is not None else ""),
                retry_after,
            )
        return response

    def _send(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        per_try: float,
    ) -> requests.Response:
        """GET with redirects followed by hand, only on the configured host.

        requests follows redirects itself and strips only ``Authorization`` when the host changes; a
        provider's own header (Electricity Maps' ``auth-token``) would go along to any host the
        provider's answer names. So redirects are never followed automatically: one to the configured
        host (same scheme, host and port, or an http to https upgrade of it) is followed with the same
        credentials, one anywhere else is refused before anything is sent there.
        """
        response = self._session.get(
            url,
            params=params,
            headers=dict(headers or {}),
            auth=auth,
            timeout=(per_try, per_try),
            allow_redirects=False,
        )
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            target = urljoin(response.url, response.headers.get("Location", ""))
            response.close()
            if not same_host(self.base_url, target):
                raise ProviderRedirectRefused(
                    f"{self.provider} redirected {self.redact(response.url)} to another host "
                    f"({self.redact(_origin(target))}); greenflow does not send credentials off the configured "
                    "host, so the request was not repeated there",
                    fix=f"if {self.redact(_origin(target))} is the provider's new address, set it as the base URL",
                )
            # The Location carries the query; credentials go again only because the host is the same.
            response = self._session.get(
                target, headers=dict(headers or {}), auth=auth, timeout=(per_try, per_try), allow_redirects=False
            )
        if response.is_redirect:
            raise ProviderError(
                f"{self.provider} redirected more than {MAX_REDIRECTS} times from {self.redact(url)}",
                fix="check the provider's base URL",
            )
        return response

    def _log_retry(self, shown: str, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        problem = failure.problem if isinstance(failure, _Transient) else repr(failure)
        log.warning(
            "%s GET %s: %s; retry %d in %.2f s",
            self.provider,
            shown,
            problem,
            state.attempt_number,
            state.upcoming_sleep,
        )

    def json(self, response: requests.Response) -> Any:
        """The response body as JSON, or :class:`ProviderError` naming the provider and URL."""
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            snippet = self.redact(response.text[:80]).replace("\n", " ")
            raise ProviderDataError(
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
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "NaN" or "inf" parse as floats but are no delay at all: ignore them, back off as usual.
        return max(0.0, seconds) if math.isfinite(seconds) else None
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
