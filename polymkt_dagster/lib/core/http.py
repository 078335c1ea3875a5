"""HTTP for the sync clients: retries with backoff and jitter, and messages without secrets.

Transient failures (429 with or without Retry-After, 5xx, timeouts, dropped connections, a
body that is not complete JSON) are retried with exponential backoff and full jitter; a 429's
Retry-After is honoured (at least that long, capped). Anything else, or a transient failure
that outlasts the attempts, raises ``SourceError`` naming the source, the cursor the sync was
at and what to do. URLs in every message are redacted: RPC providers put API keys in the
query string, the user info or a path segment, so all three are masked.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from polymkt_dagster.lib.core.redact import (  # noqa: F401  (re-exported: the sync's import site)
    MASK,
    redact_text,
    redact_url,
    register_secrets,
    secret_fragments,
    upstream_excerpt,
)

# httpx logs every request URL at INFO, keys included; a host application that turns INFO
# on (Dagster's managed loggers, a debug session) must not get them.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

PayloadCheck = Callable[[Any], str | None]
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 524})


class SourceError(RuntimeError):
    """A source failed for good: which source, at which cursor, and what to do about it."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        cursor: str | None = None,
        advice: str | None = None,
        status: int | None = None,
    ) -> None:
        self.source = source
        self.cursor = cursor
        self.status = status
        self.advice = advice
        text = f"{source}: {message}"
        if cursor:
            text += f" (cursor: {cursor})"
        if advice:
            text += f". {advice}"
        super().__init__(redact_text(text))


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0
    timeout_s: float = 30.0


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds (integer or decimal) or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """A JSON-over-HTTP client for one source with retries and redacted errors.

    ``source`` names the source in errors ("gamma", "goldsky", "rpc"); ``advice`` is the
    default hint appended to a permanent failure (which variable to check, how to resume).
    ``secrets`` are values that must never appear in a message (masked wherever found).
    """

    def __init__(
        self,
        base_url: str,
        *,
        source: str,
        advice: str,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str | None] = (),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url or not urlsplit(base_url).scheme:
            raise SourceError(source, f"base URL {redact_url(base_url)!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.source = source
        self.advice = advice
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self._secrets = [s for s in secrets if s]
        # every later message masks them, whichever code builds it (SourceError, logs)
        register_secrets(*self._secrets)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.retry.timeout_s),
            headers={"User-Agent": "polymkt-sync/0.1", **dict(headers or {})},
            follow_redirects=True,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str = "") -> str:
        return self.base_url + path if path else self.base_url

    # ---- requests --------------------------------------------------------------------
    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        cursor: str | None = None,
        transient: PayloadCheck | None = None,
    ) -> tuple[Any, str]:
        """GET and parse JSON; returns (document, raw text).

        ``transient(document)`` may return a reason when a 200 answer is really a passing
        failure (a GraphQL "indexing" error, a JSON-RPC timeout): it is retried like a 503.
        """
        return self._request("GET", path, params, None, cursor, transient)

    def post_json(
        self,
        path: str,
        body: Any,
        *,
        cursor: str | None = None,
        transient: PayloadCheck | None = None,
    ) -> tuple[Any, str]:
        return self._request("POST", path, None, body, cursor, transient)

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None,
        body: Any,
        cursor: str | None,
        transient: PayloadCheck | None,
    ) -> tuple[Any, str]:
        url = self.url(path)
        last = "no attempt made"
        for attempt in range(1, self.retry.attempts + 1):
            try:
                document, text = self._attempt(method, url, params, body)
                reason = transient(document) if transient else None
                if reason:
                    raise _Transient(f"payload: {reason}")
                return document, text
            except _Transient as exc:
                last = exc.reason
                self.stats.retries += 1
                kind = exc.reason.split(":", 1)[0]
                self.stats.retry_reasons[kind] = self.stats.retry_reasons.get(kind, 0) + 1
                if attempt == self.retry.attempts:
                    break
                self._sleep(self._delay(attempt, exc.retry_after))
        raise SourceError(
            self.source,
            f"{method} {redact_url(url)} failed after {self.retry.attempts} attempts: "
            f"{redact_text(last, self._secrets)}",
            cursor=cursor,
            advice=self.advice,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.retry.max_delay_s, self.retry.base_delay_s * 2 ** (attempt - 1))
        jittered = self._rng.uniform(0, backoff)  # full jitter spreads synchronized clients
        if retry_after is not None:
            return min(self.retry.max_retry_after_s, retry_after) + jittered * 0.1
        return jittered

    def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None,
        body: Any,
    ) -> tuple[Any, str]:
        self.stats.requests += 1
        try:
            if method == "GET":
                response = self._client.get(url, params=params)  # type: ignore[arg-type]
            else:
                response = self._client.post(url, json=body)
            text = response.text
        except httpx.TimeoutException as exc:
            raise _Transient(f"timeout: no answer within {self.retry.timeout_s:g}s") from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # str(exc) can carry the URL; keep only the class of failure.
            raise _Transient(f"connection: {type(exc).__name__}") from exc
        self.stats.bytes += len(response.content)
        status = response.status_code
        if status in RETRYABLE_STATUS:
            raise _Transient(
                f"http {status}: {upstream_excerpt(text, self._secrets)}",
                parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 400:
            raise SourceError(
                self.source,
                f"{method} {redact_url(url)} answered HTTP {status}: "
                f"{upstream_excerpt(text, self._secrets)}",
                advice=self.advice,
                status=status,
            )
        try:
            return json.loads(text), text
        except json.JSONDecodeError as exc:
            # A body cut off mid-stream (proxy reset, truncated gzip) is worth another try.
            raise _Transient(f"invalid json: {exc.msg} at char {exc.pos} of {len(text)}") from exc
