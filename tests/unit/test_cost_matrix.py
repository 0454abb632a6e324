"""The cost of one request, model by model and usage shape by usage shape, against figures worked out by hand.

Each expected figure below was worked out by hand from the providers' published list prices (USD per 1M
tokens), written next to each model, as compiled on 2026-12-06: OpenAI's API pricing page, Anthropic's Claude
pricing page (5-minute cache writes 1.25x input, 1-hour writes 2x, reads 0.1x; Sonnet 4.5 above 200k prompt
tokens: $6 / $22.50), Google's Gemini API pricing page (2.5 Pro above 200k prompt tokens: $2.50 / $15, cached
$0.25) and Amazon Bedrock's pricing page (Claude 4.5 models on regional endpoints — in-region ids and the
us./eu./apac. inference profiles — cost 10% more than on the global profile). The figures are literals, not
read back from the price database: the test goes through the gateway's whole resolution (provider, deployment
name, bundled database, conversion) and its arithmetic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from llm_gateway.accounting.usage_types import Usage
from llm_gateway.providers.registry import build_provider
from llm_gateway.routing.catalog import Deployment
from llm_gateway.settings import ProviderConfig, parse_config
from llm_gateway.usage.cost import cost_of
from llm_gateway.usage.price_db import GenaiPrices
from llm_gateway.usage.pricing import PriceBook, book_from_config

READ_ON = datetime(2026, 12, 6, tzinfo=UTC)  # the prices in force on the day the figures were compiled

PROVIDERS: list[dict[str, Any]] = [
    {"name": "oai", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["*"]},
    {"name": "claude", "type": "anthropic", "base_url": "http://127.0.0.1:9", "models": ["*"]},
    {"name": "google", "type": "gemini", "base_url": "http://127.0.0.1:9", "models": ["*"]},
    {"name": "aws", "type": "bedrock", "base_url": "http://127.0.0.1:9",
     "options": {"region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret"},
     "models": ["*"]},
    {"name": "az", "type": "azure", "base_url": "http://127.0.0.1:9",
     "models": [{"name": "gpt-4o", "model": "prod-east"}, {"name": "reasoner", "model": "my-o1", "price_as": "o1"},
                {"name": "embed", "model": "emb-1", "base_model": "text-embedding-3-small"}]},
]


@pytest.fixture(scope="module")
def book() -> PriceBook:
    config = parse_config({"providers": PROVIDERS})
    return book_from_config(config, GenaiPrices(READ_ON))


@pytest.fixture(scope="module")
def providers() -> dict[str, Any]:
    return {p["name"]: build_provider(ProviderConfig.model_validate(p)) for p in PROVIDERS}


def u(prompt: int, completion: int = 0, **details: int) -> Usage:
    return Usage(prompt, completion, **details)


# (provider, model the provider knows, usage, USD worked out by hand)
MATRIX = [
    # --- OpenAI: input / output / cached input, USD per 1M
    ("oai", "gpt-4o", u(1000, 200, cached_tokens=400), 0.004),  # 2.50/10/1.25: 600*2.5+400*1.25+200*10
    ("oai", "gpt-4o-2024-08-06", u(1000, 100), 0.0035),  # the dated name of gpt-4o: 1000*2.5+100*10
    ("oai", "gpt-4o-2024-05-13", u(1000, 100), 0.0065),  # its own price, 5/15: 1000*5+100*15
    ("oai", "gpt-4o-mini", u(10_000, 500, cached_tokens=2000), 0.00165),  # .15/.60/.075: 8000*.15+2000*.075+500*.6
    ("oai", "gpt-4o-mini-2024-07-18", u(1000, 1000), 0.00075),  # 1000*.15+1000*.6
    ("oai", "gpt-4.1", u(1000, 1000), 0.01),  # 2/8
    ("oai", "gpt-4.1-mini", u(1000, 1000), 0.002),  # .40/1.60
    ("oai", "gpt-4.1-nano", u(1000, 1000), 0.0005),  # .10/.40
    # reasoning tokens are output tokens, at the output price: 1000*1.25+1000*.125+3000*10
    ("oai", "gpt-5", u(2000, 3000, cached_tokens=1000, reasoning_tokens=2500), 0.031375),
    ("oai", "gpt-5-mini", u(1000, 1000), 0.00225),  # .25/2
    ("oai", "gpt-5-nano", u(1000, 1000), 0.00045),  # .05/.40
    ("oai", "gpt-5-pro", u(1000, 1000, reasoning_tokens=800), 0.135),  # 15/120
    ("oai", "o1", u(1000, 1000, reasoning_tokens=900), 0.075),  # 15/60
    ("oai", "o1-pro", u(1000, 1000), 0.75),  # 150/600, not o1's price
    ("oai", "o1-pro-2025-03-19", u(1000, 1000), 0.75),
    ("oai", "o1-mini", u(1000, 1000), 0.0055),  # 1.10/4.40, not o1's price
    ("oai", "o3", u(1000, 1000), 0.01),  # 2/8 (since 2025-06-10)
    ("oai", "o3-pro", u(1000, 1000), 0.1),  # 20/80, not o3's price
    ("oai", "o3-mini", u(1000, 1000), 0.0055),  # 1.10/4.40
    ("oai", "o4-mini", u(1000, 1000, cached_tokens=1000), 0.004675),  # 1.10/4.40/.275: 1000*.275+1000*4.4
    ("oai", "gpt-4", u(1000, 1000), 0.09),  # 30/60
    ("oai", "gpt-4-turbo", u(1000, 1000), 0.04),  # 10/30
    ("oai", "gpt-3.5-turbo", u(1000, 1000), 0.002),  # .50/1.50
    ("oai", "ft:gpt-4o-mini-2024-07-18:acme::abc123", u(1000, 1000), 0.0015),  # fine-tuned: .30/1.20
    ("oai", "ft:gpt-4o-2024-08-06:acme::x1", u(1000, 1000), 0.01875),  # fine-tuned: 3.75/15
    ("oai", "text-embedding-3-small", u(1_000_000), 0.02),  # embeddings: input only
    ("oai", "text-embedding-3-large", u(1_000_000), 0.13),
    # --- Anthropic: input / 5m write / 1h write / read / output
    # the issue's example: 200 in + 10,000 written + 300 out on Sonnet 4.5 (3 / 3.75 / 6 / .30 / 15):
    # 200*3 + 10000*3.75 + 300*15 = 600 + 37500 + 4500 (prompt_tokens = 10,200, the writes included)
    ("claude", "claude-sonnet-4-5-20250929", u(10_200, 300, cache_write_tokens=10_000), 0.0426),
    ("claude", "claude-sonnet-4-5", u(5100, 200, cached_tokens=5000), 0.0048),  # 100*3+5000*.3+200*15
    # 1-hour writes at 2x: 50*3 + 1000*3.75 + 3000*6 + 100*15
    ("claude", "claude-sonnet-4-5", u(4050, 100, cache_write_tokens=4000, cache_write_1h_tokens=3000), 0.0234),
    # long context: a prompt above 200k pays 6 / 22.50 for every token: 250000*6 + 1000*22.5
    ("claude", "claude-sonnet-4-5-20250929", u(250_000, 1000), 1.5225),
    # Opus 4.6 (5 / 6.25 / 10 / .50 / 25), not Opus 4's price: 500*5 + 1000*.5 + 500*6.25 + 100*25
    ("claude", "claude-opus-4-6", u(2000, 100, cached_tokens=1000, cache_write_tokens=500), 0.008625),
    ("claude", "claude-opus-4-1-20250805", u(1000, 100, cache_write_tokens=1000), 0.02625),  # 1000*18.75+100*75
    ("claude", "claude-opus-4-5-20251101", u(1000, 1000), 0.03),  # 5/25
    ("claude", "claude-sonnet-4-20250514", u(1000, 1000), 0.018),  # 3/15
    ("claude", "claude-haiku-4-5", u(1000, 1000, cached_tokens=500), 0.00555),  # 1/5/.10: 500*1+500*.1+1000*5
    ("claude", "claude-3-5-haiku-20241022", u(1000, 1000), 0.0048),  # .80/4
    ("claude", "claude-3-haiku-20240307", u(1000, 1000), 0.0015),  # .25/1.25
    # --- Gemini: 2.5 Pro 1.25 / 10 / cached .125 up to 200k prompt tokens; 2.50 / 15 / .25 above
    # 80000*1.25 + 20000*.125 + 2000*10 (thoughts are output tokens)
    ("google", "gemini-2.5-pro", u(100_000, 2000, cached_tokens=20_000, reasoning_tokens=1500), 0.1225),
    ("google", "gemini-2.5-pro", u(250_000, 1000), 0.64),  # 250000*2.5 + 1000*15
    ("google", "gemini-2.5-pro", u(300_000, 0, cached_tokens=100_000), 0.525),  # 200000*2.5 + 100000*.25
    ("google", "gemini-2.5-pro", u(200_000, 1000), 0.26),  # exactly 200k is still the lower tier: 200000*1.25+10000
    # 2.5 Flash: text .30, audio input 1.00, output 2.50: 600*.3 + 400*1 + 100*2.5
    ("google", "gemini-2.5-flash", u(1000, 100, prompt_audio_tokens=400), 0.00083),
    ("google", "gemini-2.5-flash-lite", u(1000, 1000), 0.0005),  # .10/.40
    ("google", "gemini-2.0-flash", u(1000, 1000), 0.0005),  # .10/.40
    ("google", "gemini-embedding-001", u(1_000_000), 0.15),
    # --- Bedrock: model ids and inference profiles; Claude 4.5 regional 3.30 / 4.125 / .33 / 16.50
    # the issue's example on Bedrock: 200*3.3 + 10000*4.125 + 300*16.5
    ("aws", "anthropic.claude-sonnet-4-5-20250929-v1:0", u(10_200, 300, cache_write_tokens=10_000), 0.04686),
    ("aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", u(1000, 1000), 0.0198),  # 3.3+16.5 per 1000
    ("aws", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", u(1000, 1000, cached_tokens=1000), 0.01683),
    ("aws", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", u(1000, 1000), 0.018),  # global: 3/15
    ("aws", "eu.anthropic.claude-3-7-sonnet-20250219-v1:0", u(1000, 1000), 0.018),  # 3/15
    ("aws", "anthropic.claude-haiku-4-5-20251001-v1:0", u(1000, 1000), 0.0066),  # regional 1.10/5.50
    ("aws", "amazon.nova-pro-v1:0", u(1000, 1000), 0.004),  # .80/3.20
    ("aws", "us.amazon.nova-lite-v1:0", u(1000, 1000), 0.0003),  # .06/.24
    ("aws", "meta.llama3-1-70b-instruct-v1:0", u(1000, 1000), 0.00144),  # .72/.72
    ("aws", "amazon.titan-embed-text-v2:0", u(1_000_000), 0.02),
    # --- Azure: deployment names priced by the name clients use, or by price_as / base_model
    ("az", "prod-east", u(1000, 1000, cached_tokens=200), 0.01225),  # gpt-4o: 800*2.5+200*1.25+1000*10
    ("az", "my-o1", u(1000, 1000), 0.075),  # price_as: o1
    ("az", "emb-1", u(1_000_000), 0.02),  # base_model: text-embedding-3-small
]


@pytest.mark.parametrize(("provider", "model", "usage", "expected"), MATRIX,
                         ids=[f"{p}:{m}:{i}" for i, (p, m, _, _) in enumerate(MATRIX)])
def test_cost_matrix(book: PriceBook, providers: dict[str, Any], provider: str, model: str, usage: Usage,
                     expected: float) -> None:
    priced = book.for_deployment(Deployment(providers[provider], model))
    assert priced is not None, f"{provider}/{model} has no price"
    assert cost_of(usage, priced.price) == pytest.approx(expected, rel=1e-9)
    assert priced.source.startswith("genai-prices 0.2.")


def test_the_matrix_covers_what_the_issue_asks_for() -> None:
    models = {(p, m) for p, m, _, _ in MATRIX}
    assert len(models) >= 30
    for provider in ("oai", "claude", "google", "aws", "az"):
        assert any(p == provider for p, _ in models)


@pytest.mark.parametrize(("provider", "model"), [
    ("oai", "gpt-4o-foo"), ("oai", "o1-foo"), ("oai", "gpt-5-foo"),  # no family-prefix matching
    ("claude", "claude-opus-4-9"), ("claude", "claude-foo"),
    ("aws", "cohere.embed-english-v3"),  # not in the database: unpriced, not free
    ("az", "some-deployment"),  # an Azure deployment nobody said what it is
])
def test_unknown_names_have_no_price(book: PriceBook, providers: dict[str, Any], provider: str,
                                     model: str) -> None:
    assert book.for_deployment(Deployment(providers[provider], model)) is None
