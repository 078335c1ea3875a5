"""Dataset and backtest agents: the rule-based parser, and OpenAI through a local server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import dagster as dg
import openai
from dagster_openai import OpenAIResource

from polymkt_dagster.lib.research.agents import (
    interpret_backtest,
    interpret_dataset,
    parse_backtest_rules,
    parse_dataset_rules,
)
from polymkt_dagster.lib.research.backtest import StrategyConfig
from polymkt_local.openai_compat import (
    OpenAICompatServer,
)

SECRET = "sk-test-abcdefghijklmnop0123"


def chat_route(
    server: OpenAICompatServer, answer: Callable[[dict[str, Any]], dict[str, Any] | str]
) -> list[dict[str, Any]]:
    """Serve /v1/chat/completions with ``answer(body)`` as the assistant's JSON content."""
    seen: list[dict[str, Any]] = []

    def handler(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        seen.append(body)
        content = answer(body)
        return 200, {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": content if isinstance(content, str) else json.dumps(content),
                        "refusal": None,
                    },
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }

    server.routes["/v1/chat/completions"] = handler
    return seen


def nulls(schema_fields: dict[str, Any], **values: Any) -> dict[str, Any]:
    """A strict-schema answer: every property present, unset ones null."""
    answer = {name: None for name in schema_fields}
    answer["not_understood"] = []
    answer.update(values)
    return answer


def client_for(server: OpenAICompatServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=SECRET, base_url=server.base_url, max_retries=0)


# ---- rules --------------------------------------------------------------------------------


def test_rules_read_the_issue_sentence() -> None:
    result = parse_backtest_rules("buy favorite 90 days out, hold to expiry")
    assert result.source == "rules"
    assert result.value.days_before == 90
    assert result.value.take_profit is None and result.value.stop_loss is None
    assert result.not_understood == []
    assert any("100 USDC a trade" in a for a in result.assumptions)


def test_rules_read_costs_sizing_and_exits() -> None:
    text = (
        "Buy the favourite two weeks before the election with $50 per trade, fees 2%, "
        "slippage 1 tick, take profit at 95c and stop loss at 30c, starting capital 20k"
    )
    config = parse_backtest_rules(text).value
    assert config == StrategyConfig(
        days_before=14, stake=50, fee_bps=200, slippage_ticks=1, take_profit=0.95,
        stop_loss=0.30, initial_capital=20_000,
    )  # fmt: skip
    band = parse_backtest_rules(
        "buy favorites priced between 0.6 and 0.9 30 days out, 5% of equity per trade, "
        "25 bps slippage, on the elections dataset",
        datasets=["elections"],
    )
    assert (band.value.min_price, band.value.max_price) == (0.6, 0.9)
    assert (band.value.sizing, band.value.fraction) == ("fraction", 0.05)
    assert band.value.slippage_bps == 25 and band.value.dataset == "elections"
    assert band.not_understood == []


def test_rules_say_what_they_could_not_read() -> None:
    result = parse_backtest_rules(
        "bet on the underdog 3 days before, only when the moon is full, dataset nope",
        datasets=["elections"],
    )
    assert result.value.days_before == 3
    joined = " | ".join(result.not_understood)
    assert "only buying the favorite is supported" in joined
    assert "moon is full" in joined
    assert "dataset 'nope': no such dataset" in joined
    bad = parse_backtest_rules("buy the favorite 5 days out, stop loss at 0.9, take profit at 0.5")
    assert any("invalid values" in s for s in bad.not_understood)


def test_dataset_rules() -> None:
    vocabulary = {"categories": ["Elections", "Crypto", "Sports"], "tags": ["Bitcoin", "NBA"]}
    result = parse_dataset_rules(
        "resolved election markets ending in 2024 with volume over 10k", **vocabulary
    )
    f = result.value
    assert f.categories == ["Elections"] and f.resolved is True and f.min_volume == 10_000
    assert (f.ends_after.isoformat(), f.ends_before.isoformat()) == (
        "2024-01-01T00:00:00+00:00", "2024-12-31T23:59:59+00:00",
    )  # fmt: skip
    assert result.not_understood == []
    ids = parse_dataset_rules("markets 507606, 507662 and 508791").value
    assert ids.market_ids == ["507606", "507662", "508791"]
    quoted = parse_dataset_rules('open markets about "mayoral election" banana', **vocabulary)
    assert quoted.value.query == "mayoral election" and quoted.value.closed is False
    assert quoted.not_understood == ["banana"]


# ---- OpenAI -------------------------------------------------------------------------------


def test_backtest_agent_uses_structured_output(openai_server: OpenAICompatServer) -> None:
    seen = chat_route(
        openai_server,
        lambda body: nulls(
            body["response_format"]["json_schema"]["schema"]["properties"],
            days_before=90,
            stake=25.0,
            fee_bps=50.0,
            not_understood=["full moon"],
        ),
    )
    result = interpret_backtest(
        "buy the favorite 90 days out with $25 a trade, 0.5% fees, on a full moon",
        client=client_for(openai_server),
        model="test-model",
    )
    assert result.source == "openai" and result.warnings == []
    assert result.value == StrategyConfig(days_before=90, stake=25, fee_bps=50)
    assert result.not_understood == ["full moon"]
    request = seen[0]
    assert request["model"] == "test-model" and request["temperature"] == 0
    response_format = request["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"days_before", "take_profit", "not_understood"}
    assert "buy the favorite 90 days out" in request["messages"][-1]["content"]


def test_invalid_model_answers_fall_back_to_rules(openai_server: OpenAICompatServer) -> None:
    answers = iter(
        [
            lambda props: nulls(props, days_before=-5),  # violates ge=0
            lambda props: nulls(props, min_price=0.9, max_price=0.5),  # violates the band
            lambda props: "not json at all",
        ]
    )
    chat_route(
        openai_server,
        lambda body: next(answers)(body["response_format"]["json_schema"]["schema"]["properties"]),
    )
    client = client_for(openai_server)
    for expected in ("days_before", "min_price", "did not match the schema"):
        result = interpret_backtest("buy the favorite 7 days out", client=client)
        assert result.source == "rules" and result.value.days_before == 7
        assert expected in result.warnings[0] and "rule-based parser" in result.warnings[0]


def test_failed_request_falls_back_without_leaking_the_key(
    openai_server: OpenAICompatServer,
) -> None:
    chat_route(openai_server, lambda body: {})
    openai_server.fail_next(500)
    result = interpret_dataset("crypto markets", client=client_for(openai_server),
                               categories=["Crypto"])  # fmt: skip
    assert result.source == "rules" and result.value.categories == ["Crypto"]
    assert "OpenAI request failed" in result.warnings[0]
    assert SECRET not in json.dumps(result.to_json())


def test_dataset_agent_through_the_dagster_openai_resource(
    openai_server: OpenAICompatServer,
) -> None:
    chat_route(
        openai_server,
        lambda body: nulls(
            body["response_format"]["json_schema"]["schema"]["properties"],
            categories=["Elections"],
            ends_after="2024-01-01T00:00:00Z",
            min_volume=500.0,
        ),
    )
    resource = OpenAIResource(api_key=SECRET, base_url=openai_server.base_url)
    with (
        dg.build_op_context(resources={"openai": resource}) as context,
        context.resources.openai.get_client(context) as client,
    ):
        result = interpret_dataset("elections since 2024 with volume above 500", client=client)
    assert result.source == "openai"
    assert result.value.categories == ["Elections"] and result.value.min_volume == 500
    assert result.value.ends_after.year == 2024
