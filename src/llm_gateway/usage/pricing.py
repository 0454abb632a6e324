"""The price table: shipped prices (usage/prices.json, dated) with per-model overrides from config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).with_name("prices.json")
_PER_TOKEN = 1e-6  # the table is per 1M tokens
_MEMO_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token (not per 1M) so the cost of a request is a handful of multiplications."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float = 0.0
    cache_write: float = 0.0
    reasoning: float = 0.0

    @classmethod
    def per_million(cls, entry: dict[str, Any]) -> Price:
        """From `{input, output, cached_input?, cache_write?, reasoning?}` in USD per 1M tokens."""
        inp = float(entry.get("input") or 0.0)
        out = float(entry.get("output") or 0.0)

        def opt(name: str, default: float) -> float:
            value = entry.get(name)
            return default if value is None else float(value)

        return cls(inp * _PER_TOKEN, out * _PER_TOKEN, opt("cached_input", inp) * _PER_TOKEN,
                   opt("cache_write", inp) * _PER_TOKEN, opt("reasoning", out) * _PER_TOKEN)

    def per_million_dict(self) -> dict[str, float]:
        scale = 1 / _PER_TOKEN
        return {"input": round(self.input * scale, 6), "output": round(self.output * scale, 6),
                "cached_input": round(self.cached_input * scale, 6),
                "cache_write": round(self.cache_write * scale, 6),
                "reasoning": round(self.reasoning * scale, 6)}


FREE = Price()


def load_shipped(path: Path = PRICES_FILE) -> tuple[str, dict[str, Price]]:
    data = json.loads(path.read_text())
    return str(data["prices_taken_on"]), {name: Price.per_million(p) for name, p in data["models"].items()}


class PriceTable:
    """Finds a model's price: config overrides (`provider/model`, then `model`), then the shipped table.

    Shipped names match dated and suffixed variants (`gpt-4o-2024-08-06`, `mistral-large-latest`) by the
    longest `name-` prefix. A model found nowhere (a self-hosted one) costs 0.
    """

    def __init__(self, shipped: dict[str, Price], overrides: dict[str, Price] | None = None,
                 taken_on: str = "") -> None:
        self.shipped = shipped
        self.overrides = overrides or {}
        self.taken_on = taken_on
        self._by_length = sorted(shipped, key=len, reverse=True)
        self._memo: dict[tuple[str, str], Price] = {}

    @classmethod
    def load(cls, overrides: dict[str, dict[str, Any]] | None = None) -> PriceTable:
        taken_on, shipped = load_shipped()
        return cls(shipped, {k: Price.per_million(v) for k, v in (overrides or {}).items()}, taken_on)

    def lookup(self, model: str, provider: str = "") -> Price:
        memo_key = (provider, model)
        price = self._memo.get(memo_key)
        if price is None:
            price = self._find(model, provider)
            if len(self._memo) < _MEMO_LIMIT:
                self._memo[memo_key] = price
        return price

    def _find(self, model: str, provider: str) -> Price:
        overrides = self.overrides
        if provider and f"{provider}/{model}" in overrides:
            return overrides[f"{provider}/{model}"]
        if model in overrides:
            return overrides[model]
        name = model.rsplit("/", 1)[-1]
        if name in overrides:
            return overrides[name]
        if name in self.shipped:
            return self.shipped[name]
        for known in self._by_length:
            if name.startswith(known + "-"):
                return self.shipped[known]
        return FREE
