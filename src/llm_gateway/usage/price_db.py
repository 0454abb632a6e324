"""The bundled price database: genai-prices' data (shipped with the package, never downloaded) as our Prices.

genai-prices keeps, per provider, each model's prices per token class, with tiers by prompt size and dated
price changes, and its own rules for which names mean which model (dated versions, Bedrock's regional and
global inference profiles). We read a model's prices once, convert them to floats per token, and leave its
calculator (Decimal arithmetic per call) out of the request path.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version as package_version

from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

from llm_gateway.usage.pricing import Price, Priced

# genai-prices price key (USD per 1M) -> our token class
_KEYS = {"input_mtok": "input", "output_mtok": "output", "cache_read_mtok": "cached_input",
         "cache_write_mtok": "cache_write", "cache_write_5m_mtok": "cache_write",
         "cache_write_1h_mtok": "cache_write_1h", "input_audio_mtok": "input_audio",
         "input_image_mtok": "input_image", "output_reasoning_mtok": "reasoning",
         "output_audio_mtok": "output_audio", "output_image_mtok": "output_image"}


def _at(value: Decimal | TieredPrices, prompt_tokens: int) -> Decimal:
    """A key's price for a prompt of this size (genai-prices' rule: a tier applies above its start)."""
    if not isinstance(value, TieredPrices):
        return value
    for tier in reversed(value.tiers):
        if prompt_tokens > tier.start:
            return tier.price
    return value.base


def to_price(prices: ModelPrice) -> Price | None:
    """Our Price for one of genai-prices' model prices; None when it has no token prices at all."""
    found: dict[str, Decimal | TieredPrices] = {}
    for key, name in _KEYS.items():
        value = getattr(prices, key, None)
        if isinstance(value, Decimal | TieredPrices) and name not in found:
            found[name] = value
    if "input" not in found and "output" not in found:
        return None
    starts = sorted({t.start for v in found.values() if isinstance(v, TieredPrices) for t in v.tiers})

    def flat(prompt_tokens: int) -> Price:
        return Price.per_million({name: _at(value, prompt_tokens) for name, value in found.items()})

    searches = getattr(prices, "web_searches_kcount", None)
    base = replace(flat(0), web_search=float(searches) / 1000) if isinstance(searches, Decimal) else flat(0)
    if not starts:
        return base
    return replace(base, tiers=tuple((start, flat(start + 1)) for start in starts))


class GenaiPrices:
    """Finds a model in genai-prices' bundled data, by provider id (`openai`, `aws`, …) or API URL."""

    def __init__(self, when: datetime | None = None) -> None:
        self.version = package_version("genai-prices")
        self.snapshot = data_snapshot.get_snapshot()
        self.when = when or datetime.now(tz=UTC)  # which of a model's dated prices applies

    def find(self, model: str, catalog: str, url: str) -> Priced | None:
        """By the provider's id (`catalog`), else by its API URL; a URL no provider owns (an OpenAI-compatible
        server of your own) leaves the provider to the database's model-name rules, which know each
        provider's own model families (`gpt-4o-mini` is OpenAI's; `llama-3.1-8b` is nobody's)."""
        provider_id = catalog or None
        provider_url = None
        if not catalog and url:
            try:
                self.snapshot.find_provider(None, None, url)
                provider_url = url
            except LookupError:
                pass
        try:
            provider, info = self.snapshot.find_provider_model(model, None, provider_id, provider_url)
        except LookupError:
            return None
        price = to_price(info.get_prices(self.when))
        if price is None:
            return None
        how = "" if provider_id or provider_url else " (by model name)"
        return Priced(price, f"genai-prices {self.version}: {provider.id}/{info.id}{how}", self._tiers(info, price))

    def _tiers(self, info: ModelInfo, standard: Price) -> dict[str, Price]:
        """The model's prices per service tier (`priority`, `flex`, …) that differ from its standard ones."""
        out = {}
        for variant in info.price_variants or ():
            tier = variant.when.get("service_tier")
            if tier is None or len(variant.when) != 1:
                continue
            price = to_price(info.get_prices(self.when, {"service_tier": tier}))
            if price is not None and price != standard:
                out[tier] = price
        return out
