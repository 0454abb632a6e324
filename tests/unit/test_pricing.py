"""The shipped price table, name matching, config overrides and the cost of a usage record."""

from __future__ import annotations

import json

import pytest

from llm_gateway.pipeline.context import Usage
from llm_gateway.usage.cost import cost_of
from llm_gateway.usage.pricing import FREE, PRICES_FILE, Price, PriceTable


def test_shipped_table_is_dated_and_covers_the_four_providers() -> None:
    data = json.loads(PRICES_FILE.read_text())
    assert data["prices_taken_on"] == "2026-11-23"
    names = set(data["models"])
    for expected in ("gpt-4o", "gpt-4o-mini", "o3", "claude-sonnet-4-5", "claude-3-5-haiku", "gemini-2.5-pro",
                     "gemini-2.5-flash", "mistral-large", "mistral-small"):
        assert expected in names
    table = PriceTable.load()
    assert table.taken_on == "2026-11-23"
    assert table.lookup("gpt-4o-mini") == Price(0.15e-6, 0.60e-6, 0.075e-6, 0.15e-6, 0.60e-6)


@pytest.mark.parametrize(("model", "known"), [
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("mistral-large-latest", "mistral-large"),
    ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
    ("models/gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
])
def test_dated_and_prefixed_names_match_the_longest_known_name(model: str, known: str) -> None:
    table = PriceTable.load()
    assert table.lookup(model) == table.shipped[known]


def test_self_hosted_models_cost_nothing_unless_configured() -> None:
    table = PriceTable.load({"gemma3": {"input": 0.01, "output": 0.02},
                             "local/gpt-4o": {"input": 0, "output": 0}})
    assert table.lookup("llama-3.1-8b") is FREE
    assert table.lookup("gemma3") == Price.per_million({"input": 0.01, "output": 0.02})
    # provider/model overrides win, so a self-hosted server reusing a commercial name can be made free
    assert table.lookup("gpt-4o", "local") == Price()
    assert table.lookup("gpt-4o", "openai") == table.shipped["gpt-4o"]


def test_override_replaces_a_shipped_price() -> None:
    table = PriceTable.load({"gpt-4o": {"input": 1.0, "output": 2.0, "cached_input": 0.5}})
    assert table.lookup("gpt-4o").input == pytest.approx(1e-6)
    assert table.lookup("gpt-4o").cached_input == pytest.approx(0.5e-6)
    assert table.lookup("gpt-4o").reasoning == pytest.approx(2e-6)  # defaults to the output price


def test_cost_prices_cached_and_reasoning_tokens_apart() -> None:
    price = Price.per_million({"input": 2.0, "output": 8.0, "cached_input": 0.5, "reasoning": 10.0,
                               "cache_write": 2.5})
    usage = Usage(1_000_000, 500_000, cached_tokens=400_000, reasoning_tokens=100_000,
                  cache_write_tokens=200_000)
    # 600k fresh input * 2 + 400k cached * 0.5 + 200k writes * 2.5 + 400k output * 8 + 100k reasoning * 10
    assert cost_of(usage, price) == pytest.approx(1.2 + 0.2 + 0.5 + 3.2 + 1.0)
    assert cost_of(Usage(11, 5), PriceTable.load().lookup("gpt-4o-mini")) == pytest.approx(4.65e-6)
    assert cost_of(Usage(11, 5), FREE) == 0.0
