"""The sync's HTTP client against a real local server: retries, backoff, and no secrets."""

import time

import pytest

from polymkt_dagster.lib.core.http import (
    HttpClient,
    RetryPolicy,
    SourceError,
    parse_retry_after,
    redact_text,
    redact_url,
)
from polymkt_local.polymarket_apis import GammaServer, sample_gamma

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05, timeout_s=1.0)


@pytest.fixture
def gamma() -> GammaServer:
    markets, events = sample_gamma()
    with GammaServer(markets, events) as server:
        yield server


def _client(url: str, **kwargs) -> HttpClient:
    return HttpClient(url, source="gamma", advice="check POLYMKT_GAMMA_API_URL", **kwargs)


def test_redact_url_masks_query_userinfo_and_key_like_segments() -> None:
    assert redact_url("https://user:pw@rpc.example.com/v2/abcDEF1234567890xyz0?key=s3cr3t") == (
        "https://***@rpc.example.com/v2/***?key=***"
    )
    assert redact_url("http://127.0.0.1:8545/") == "http://127.0.0.1:8545/"
    text = "GET https://node.io/v3/0123456789abcdef0123456789abcdef failed; token=hunter22"
    redacted = redact_text(text, ["hunter22"])
    assert "0123456789abcdef0123456789abcdef" not in redacted and "hunter22" not in redacted


def test_retry_after_is_honoured_then_the_answer_arrives(gamma: GammaServer) -> None:
    gamma.fail_next(429, retry_after="0.3")
    client = _client(gamma.base_url, retry=FAST)
    started = time.monotonic()
    document, _ = client.get_json("/markets/keyset", [("limit", "5")])
    assert time.monotonic() - started >= 0.3  # waited at least what the server asked
    assert len(document["markets"]) == 5
    assert client.stats.retries == 1 and client.stats.retry_reasons == {"http 429": 1}


def test_5xx_timeouts_and_truncated_json_are_retried(gamma: GammaServer) -> None:
    gamma.fail_next(500, 503)
    gamma.stall_next(1, 1.5)  # longer than the 1 s client timeout
    gamma.truncate_next(1)
    client = _client(gamma.base_url, retry=RetryPolicy(attempts=6, base_delay_s=0.01,
                                                       timeout_s=1.0))  # fmt: skip
    document, _ = client.get_json("/markets/keyset", [("limit", "3")])
    assert len(document["markets"]) == 3
    assert set(client.stats.retry_reasons) == {"http 500", "http 503", "timeout", "invalid json"}


def test_permanent_failure_names_source_cursor_and_advice_without_the_key(
    gamma: GammaServer,
) -> None:
    gamma.fail_next(500, 500, 500, 500)
    secret_url = gamma.base_url.replace("http://", "http://alice:pa55word@") + "/?apikey=SECRET42"
    client = _client(secret_url, retry=FAST, secrets=["SECRET42"])
    with pytest.raises(SourceError) as caught:
        client.get_json("/markets/keyset", [("limit", "3")], cursor="after_cursor=abc")
    message = str(caught.value)
    assert message.startswith("gamma: GET")
    assert "after 4 attempts" in message and "cursor: after_cursor=abc" in message
    assert "check POLYMKT_GAMMA_API_URL" in message
    assert "SECRET42" not in message and "pa55word" not in message and "alice" not in message


def test_a_client_error_is_not_retried(gamma: GammaServer) -> None:
    client = _client(gamma.base_url, retry=FAST)
    with pytest.raises(SourceError, match="HTTP 422"):
        client.get_json("/markets/keyset", [("limit", "101")])  # above the keyset cap
    assert client.stats.requests == 1


def test_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert parse_retry_after("soon") is None
