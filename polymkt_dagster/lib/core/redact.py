"""Secrets out of every message: URLs, credential pairs, Authorization values, known keys.

Configured secrets (API keys, URLs that hold keys) are registered once (``Settings.from_env``
does it) and masked wherever a message is built with ``redact_text``: errors, logs, run
metadata, the audit trail. URLs are masked structurally (``redact_url``): the user info,
every query value and every path segment that is not a known public word or a version.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

MASK = "***"
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)]+")
# Path segments that name an API, a version or a resource, never a credential. Every other
# segment of a URL is masked whatever its length: providers put keys in the path (Alchemy
# /v2/<key>, Infura /v3/<key>, QuickNode /<token>/, Goldsky project paths), some short.
PUBLIC_SEGMENTS = frozenset(
    {
        "api", "public", "rpc", "jsonrpc", "json-rpc", "graphql", "gn", "subgraphs",
        "subgraph", "id", "name", "markets", "events", "keyset", "orderbook-subgraph",
        "pnl-subgraph", "activity-subgraph", "positions-subgraph", "polygon",
        "polygon-mainnet", "polygon-rpc", "matic", "mainnet", "ext", "bor", "http", "ws",
        "chat", "completions", "embeddings", "models", "health", "status", "services",
        "hooks", "webhook", "webhooks", "query", "price", "prices-history", "book", "trades",
    }
)  # fmt: skip
_PUBLIC_SEGMENT_RE = re.compile(r"^(v\d+(\.\d+)*|\d+(\.\d+)+|\d{1,12})$", re.IGNORECASE)
# key=value pairs, Authorization headers and the like that an upstream server may echo back
_CREDENTIAL_RE = re.compile(
    r"(?i)\b((?:[a-z_-]*(?:key|token|secret|password|passwd|pwd|auth|signature|credential)"
    r"[a-z_-]*)[\"']?\s*[=:]\s*[\"']?)([^\s\"'&,;}]+)"
)
_AUTH_SCHEME_RE = re.compile(r"(?i)\b(basic|bearer|token)\s+([A-Za-z0-9+/=._~-]{4,})")
_SECRETS: set[str] = set()


def _is_public_segment(segment: str) -> bool:
    return (
        not segment or segment.lower() in PUBLIC_SEGMENTS or bool(_PUBLIC_SEGMENT_RE.match(segment))
    )


def redact_url(url: object) -> str:
    """The URL with its user info, query values and every non-public path segment as ***."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK if str(url) else ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = (f"{MASK}@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    path = "/".join(seg if _is_public_segment(seg) else MASK for seg in parts.path.split("/"))
    query = "&".join(
        f"{name}={MASK}" if sep else MASK
        for name, sep, _ in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def secret_fragments(value: str | None) -> set[str]:
    """The parts of a secret (a key, or a URL holding keys) that must never be shown.

    For a URL: the user name, the password, their Basic-auth encoding, every non-public path
    segment and every query value; for anything else, the value itself.
    """
    if not value:
        return set()
    try:
        parts = urlsplit(value)
    except ValueError:
        return {value}
    if not parts.scheme or not parts.netloc:
        return {value}
    # the URL itself is masked by redact_url wherever it appears; its parts are looked for
    # alone too, since an error message or an echoing server may quote them out of the URL
    fragments: set[str] = set()
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        fragments.update({user, password, parts.username or "", parts.password or ""})
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        fragments.update({basic, basic.rstrip("=")})
    # Path segments are looked for in free text too when they look like a key (a digit in
    # them, or long): a plain word such as "proxy" is masked inside URLs, not everywhere.
    fragments.update(
        seg
        for seg in parts.path.split("/")
        if not _is_public_segment(seg) and (any(c.isdigit() for c in seg) or len(seg) >= 12)
    )
    for _, raw in parse_qsl(parts.query, keep_blank_values=True):
        fragments.update({raw, quote(raw, safe="")})
    # A two-letter fragment would mask ordinary words; keys are longer than that.
    return {f for f in fragments if len(f) >= 3}


def register_secrets(*values: str | None) -> None:
    """Remember configured secrets (keys, URLs holding keys): ``redact_text`` masks them
    everywhere from now on, whoever builds the message."""
    for value in values:
        _SECRETS.update(secret_fragments(value))


def registered_secrets() -> frozenset[str]:
    return frozenset(_SECRETS)


@contextmanager
def secrets_scope(start_from: Iterable[str] | None = None) -> Iterator[None]:
    """Secrets registered inside the block are forgotten after it (and, with ``start_from``,
    only those are known inside it): one process (a test run) builds many configurations,
    and one's values must not mask another's messages."""
    saved = set(_SECRETS)
    if start_from is not None:
        _SECRETS.clear()
        _SECRETS.update(start_from)
    try:
        yield
    finally:
        _SECRETS.clear()
        _SECRETS.update(saved)


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask every URL (as ``redact_url``), credential-looking pair, Authorization value,
    registered secret and given secret in ``text``."""
    known = set(_SECRETS)
    for secret in secrets:
        known.update(secret_fragments(secret))
    # longest first: a URL is masked whole before its segments are looked for
    for secret in sorted(known, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    text = _AUTH_SCHEME_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _CREDENTIAL_RE.sub(lambda m: m.group(1) + MASK, text)


def upstream_excerpt(text: str, secrets: Iterable[str | None] = (), limit: int = 120) -> str:
    """A short, redacted excerpt of an upstream answer, never the body verbatim: servers
    echo requests back (headers with Basic auth, URLs with ``apikey=``)."""
    return _short(redact_text(" ".join(text.split()), secrets), limit)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
