"""Prices per token class, the order a deployment's price is found in, config overrides, the unpriced counter,
and the cost of a usage record (each class charged once)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from llm_gateway.accounting.usage_types import Usage
from llm_gateway.providers.registry import build_provider
from llm_gateway.providers.usage_map import openai_usage, usage_from
from llm_gateway.routing.catalog import Deployment
from llm_gateway.settings import ConfigError, ProviderConfig, parse_config
from llm_gateway.usage.cost import cost_of
from llm_gateway.usage.price_db import GenaiPrices
from llm_gateway.usage.pricing import Price, PriceBook, book_from_config

DB = GenaiPrices(datetime(2026, 12, 6, tzinfo=UTC))
SONNET = Price.per_million({"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75,
                            "cache_write_1h": 6})


def provider(kind: str, name: str = "p", base_url: str = "http://127.0.0.1:9/v1", **extra: Any) -> Any:
    options = {"region": "us-east-1", "access_key_id": "AKID", "secret_access_key": "s"} if kind == "bedrock" else {}
    return build_provider(ProviderConfig.model_validate(
        {"name": name, "type": kind, "base_url": base_url, "options": options, **extra}))


def test_a_cache_write_is_charged_once_at_the_write_price() -> None:
    # The figure: Sonnet 4.5, 200 tokens in, 10,000 written, 300 out. prompt_tokens includes the
    # written tokens (OpenAI's meaning), so they must not be charged at the input price as well.
    usage = usage_from("anthropic", {"input_tokens": 200, "cache_creation_input_tokens": 10_000,
                                     "output_tokens": 300})
    assert usage.prompt_tokens == 10_200 and usage.cache_write_tokens == 10_000
    assert cost_of(usage, SONNET) == pytest.approx(0.0426)  # 200*3 + 10000*3.75 + 300*15 per 1M


def test_each_class_has_its_price() -> None:
    price = Price.per_million({"input": 2.0, "output": 8.0, "cached_input": 0.5, "reasoning": 10.0,
                               "cache_write": 2.5, "cache_write_1h": 4.0, "input_audio": 20.0,
                               "output_audio": 40.0, "input_image": 3.0, "output_image": 30.0})
    usage = Usage(1_000_000, 500_000, cached_tokens=300_000, cache_write_tokens=200_000,
                  cache_write_1h_tokens=50_000, prompt_audio_tokens=100_000, prompt_image_tokens=100_000,
                  reasoning_tokens=100_000, completion_audio_tokens=50_000, completion_image_tokens=50_000)
    # input: 300k fresh text*2 + 300k cached*.5 + 150k 5m writes*2.5 + 50k 1h writes*4 + 100k audio*20
    #        + 100k image*3 = .6 + .15 + .375 + .2 + 2 + .3
    # output: 300k text*8 + 100k reasoning*10 + 50k audio*40 + 50k image*30 = 2.4 + 1 + 2 + 1.5
    assert cost_of(usage, price) == pytest.approx(3.625 + 6.9)


def test_a_class_without_a_price_costs_its_parents() -> None:
    price = Price.per_million({"input": 2.0, "output": 8.0, "cache_write": 2.5})
    assert price.cached_input == price.input_audio == price.input_image == pytest.approx(2e-6)
    assert price.cache_write_1h == pytest.approx(2.5e-6)  # a 1-hour write without its price: the write price
    assert price.reasoning == price.output_audio == pytest.approx(8e-6)
    assert Price.per_million({"input": 0.02}).output == 0.0  # an embedding model


def test_inconsistent_counts_are_capped_never_charged_twice() -> None:
    price = Price.per_million({"input": 1.0, "output": 1.0, "cached_input": 0.0, "cache_write": 0.0})
    # 100 prompt tokens, of which a provider claims 80 cached and 80 written: at most 100 are charged apart
    assert cost_of(Usage(100, 0, cached_tokens=80, cache_write_tokens=80), price) == 0.0
    assert cost_of(Usage(100, 10, reasoning_tokens=50), price) == pytest.approx(110e-6)


def test_tiers_by_prompt_size_from_config() -> None:
    price = Price.per_million({"input": 1.25, "output": 10, "cached_input": 0.125,
                               "tiers": [{"above": 200_000, "input": 2.5, "output": 15, "cached_input": 0.25}]})
    assert cost_of(Usage(200_000, 0), price) == pytest.approx(0.25)
    assert cost_of(Usage(200_001, 0), price) == pytest.approx(200_001 * 2.5e-6)
    assert cost_of(Usage(300_000, 1000, cached_tokens=100_000), price) == pytest.approx(0.5 + 0.025 + 0.015)
    tier = price.at(250_000)
    assert tier.cache_write == pytest.approx(2.5e-6)  # a class the tier leaves out: the tier's input price


def test_usage_fields_of_each_provider() -> None:
    anthropic = usage_from("anthropic", {
        "input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 1000,
        "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600}, "output_tokens": 5})
    assert (anthropic.prompt_tokens, anthropic.cached_tokens, anthropic.cache_write_tokens,
            anthropic.cache_write_1h_tokens) == (1110, 100, 1000, 600)
    bedrock = usage_from("bedrock", {"inputTokens": 10, "outputTokens": 5, "cacheWriteInputTokens": 300,
                                     "cacheDetails": [{"ttl": "1h", "inputTokens": 200},
                                                      {"ttl": "5m", "inputTokens": 100}]})
    assert (bedrock.prompt_tokens, bedrock.cache_write_tokens, bedrock.cache_write_1h_tokens) == (310, 300, 200)
    gemini = usage_from("gemini", {
        "promptTokenCount": 1000, "cachedContentTokenCount": 200, "toolUsePromptTokenCount": 50,
        "candidatesTokenCount": 30, "thoughtsTokenCount": 70,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 600}, {"modality": "AUDIO", "tokenCount": 300},
                                {"modality": "IMAGE", "tokenCount": 100}]})
    assert (gemini.prompt_tokens, gemini.cached_tokens, gemini.prompt_audio_tokens, gemini.prompt_image_tokens,
            gemini.completion_tokens, gemini.reasoning_tokens) == (1050, 200, 300, 100, 100, 70)
    openai = Usage.from_openai({"prompt_tokens": 100, "completion_tokens": 50,
                                "prompt_tokens_details": {"cached_tokens": 20, "audio_tokens": 30},
                                "completion_tokens_details": {"reasoning_tokens": 10, "audio_tokens": 5}})
    assert (openai.cached_tokens, openai.prompt_audio_tokens, openai.reasoning_tokens,
            openai.completion_audio_tokens) == (20, 30, 10, 5)
    emitted = openai_usage(anthropic)
    assert emitted["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 1000,
                                                "cache_write_1h_tokens": 600}
    assert Usage.from_openai(emitted).cache_write_1h_tokens == 600  # what the cache stores reads back whole


def test_where_a_deployment_price_comes_from() -> None:
    config = parse_config({
        "providers": [
            {"name": "oai", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["*"]},
            {"name": "az", "type": "azure", "base_url": "http://127.0.0.1:9",
             "models": [{"name": "gpt-4o", "model": "dep-a"}, {"name": "cheap", "model": "dep-b",
                                                               "pricing": {"input": 1, "output": 2}}]},
            {"name": "local", "type": "openai-compatible", "base_url": "http://127.0.0.1:8000/v1",
             "models": ["gpt-4o-mini", "llama-3.1-8b", "gemma3"]}],
        "models": {"smart": {"deployments": [{"provider": "local", "model": "x", "price_as": "no-such-model"}]}},
        "pricing": {"gemma3": {"input": 0.01, "output": 0.02}, "oai/gpt-4.1": {"input": 9, "output": 9}},
    })
    book = book_from_config(config, DB)
    oai, az, local = (provider("openai", "oai"), provider("azure", "az", "http://127.0.0.1:9"),
                      provider("openai-compatible", "local", "http://127.0.0.1:8000/v1"))

    def source(p: Any, model: str, dep_id: str = "") -> str | None:
        priced = book.for_deployment(Deployment(p, model, id=dep_id))
        return priced.source.split(": ", 1)[-1] if priced else None

    assert source(oai, "gpt-4o") == "openai/gpt-4o"
    assert source(oai, "gpt-4.1") == "config pricing.models[oai/gpt-4.1]"  # provider/model override first
    assert source(az, "dep-a") == "azure/gpt-4o"  # an Azure deployment: by the name clients use
    assert source(az, "dep-b") == "config deployment az/dep-b"
    assert source(local, "gemma3") == "config pricing.models[gemma3]"
    assert source(local, "gpt-4o-mini") == "openai/gpt-4o-mini (by model name)"  # a URL no provider owns
    assert source(local, "llama-3.1-8b") is None  # self-hosted and unknown: unpriced, not free
    assert source(local, "x") is None  # price_as names an unknown model: no guess from its own name


def test_price_as_on_an_alias_deployment() -> None:
    config = parse_config({
        "providers": [{"name": "local", "type": "openai-compatible", "base_url": "http://127.0.0.1:8000/v1"}],
        "models": {"smart": {"deployments": [{"provider": "local", "model": "llama", "name": "l1",
                                              "price_as": "gpt-4o"}]}}})
    book = book_from_config(config, DB)
    priced = book.for_deployment(Deployment(provider("openai-compatible", "local"), "llama", id="l1"))
    assert priced is not None and priced.price.input == pytest.approx(2.5e-6)


def test_unpriced_requests_are_counted_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    book = PriceBook(DB)
    book.on_unpriced = seen.append
    with caplog.at_level(logging.WARNING, "llm_gateway.pricing"):
        for _ in range(3):
            book.unpriced("mystery")
        book.unpriced("other")
    assert seen == ["mystery"] * 3 + ["other"]
    assert [r.getMessage().count("mystery") for r in caplog.records] == [1, 0]


def test_the_pricing_section_and_its_older_flat_form() -> None:
    flat = parse_config({"pricing": {"gpt-4o": {"input": 1, "output": 2}}})
    assert flat.pricing.unknown == "allow" and flat.pricing.models["gpt-4o"].input == 1
    both = parse_config({"pricing": {"unknown": "reject", "models": {"a": {"input": 1}}, "b": {"input": 2}}})
    assert both.pricing.unknown == "reject" and set(both.pricing.models) == {"a", "b"}
    with pytest.raises(ConfigError, match=r"pricing\.unknown"):
        parse_config({"pricing": {"unknown": "free"}})
    with pytest.raises(ConfigError, match=r"pricing\.models\.x\.input"):
        parse_config({"pricing": {"x": {"input": -1}}})


def test_resolution_is_memoised_per_deployment() -> None:
    calls: list[str] = []

    class Counting:
        version = "t"

        def find(self, model: str, catalog: str, url: str) -> Any:
            calls.append(model)
            return None

    book = PriceBook(Counting())
    dep = Deployment(provider("openai", "oai"), "nothing-known")
    for _ in range(5):
        assert book.for_deployment(dep) is None
    assert calls == ["nothing-known"]


def test_a_non_ascii_digit_in_a_report_time_is_a_400_not_a_500() -> None:
    import pytest

    from llm_gateway.errors import BadRequest
    from llm_gateway.usage.report import timestamp_ms

    assert timestamp_ms("1700000000000", "end") == 1700000000000
    with pytest.raises(BadRequest, match="end must be epoch milliseconds"):
        timestamp_ms("³", "end")  # found by schemathesis: str.isdigit() accepts it, int() does not
