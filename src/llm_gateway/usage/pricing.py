"""Prices: a price per token class (with tiers by prompt size), and where each deployment's price comes from.

A deployment is priced by what it is, in this order: its own `pricing:`; the config's `pricing.models` entry
for `provider/model`; then the name it is priced as (`price_as`), else the name its provider knows it by (and,
for providers whose upstream names are deployment names, the names clients use for it), each looked up in
`pricing.models` and then in the bundled price database (usage.price_db). Names match exactly or as the
database's own rules for dated versions say; there is no family-prefix matching here.

Resolution happens once per deployment (at start-up for the configured ones) and is memoised: the request
path does one dict lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from llm_gateway.settings import GatewayConfig, PriceConfig

if TYPE_CHECKING:
    from llm_gateway.providers.base import Provider

log = logging.getLogger("llm_gateway.pricing")

_PER_TOKEN = 1e-6  # prices are configured and published per 1M tokens
_MEMO_LIMIT = 10_000

# class -> the class whose price it takes when it has none of its own
_PARENT = {"cached_input": "input", "cache_write": "input", "cache_write_1h": "cache_write",
           "input_audio": "input", "input_image": "input", "reasoning": "output", "output_audio": "output",
           "output_image": "output"}
CLASSES = ("input", "output", *_PARENT)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token (not per 1M) of each token class, so a request's cost is a handful of multiplications.

    `tiers` are (prompt size, price): when a request's prompt has more tokens than a tier's size, every token
    of it is charged at that tier's prices (Gemini 2.5 Pro above 200k, Anthropic's long context).
    """

    input: float = 0.0
    output: float = 0.0
    cached_input: float = 0.0
    cache_write: float = 0.0
    cache_write_1h: float = 0.0
    input_audio: float = 0.0
    input_image: float = 0.0
    reasoning: float = 0.0
    output_audio: float = 0.0
    output_image: float = 0.0
    tiers: tuple[tuple[int, Price], ...] = ()
    web_search: float = 0.0  # USD per server-side web search (published per 1,000), whatever the prompt's size

    @classmethod
    def per_million(cls, entry: Mapping[str, Any]) -> Price:
        """From USD per 1M tokens per class (`input`, `output`, … as in CLASSES); a class left out (or None)
        costs its parent class's price; `tiers`: a list of the same with `above` (prompt tokens)."""
        values: dict[str, float] = {}
        for name in CLASSES:
            given = entry.get(name)
            if given is not None:
                values[name] = float(given) * _PER_TOKEN
            else:  # input and output have no parent: an embedding model's output costs nothing
                values[name] = values[_PARENT[name]] if name in _PARENT else 0.0
        v = values
        base = cls(v["input"], v["output"], v["cached_input"], v["cache_write"], v["cache_write_1h"],
                   v["input_audio"], v["input_image"], v["reasoning"], v["output_audio"], v["output_image"],
                   web_search=float(entry.get("web_search") or 0.0) / 1000)
        # a class a tier leaves out costs its parent's price *in that tier* (the tier's input or output)
        tiers = tuple((int(tier["above"]), cls.per_million({k: v for k, v in tier.items() if k != "above"}))
                      for tier in sorted(entry.get("tiers") or (), key=lambda t: int(t["above"])))
        return replace(base, tiers=tiers) if tiers else base

    def at(self, prompt_tokens: int) -> Price:
        """The price that applies to a request with this many prompt tokens."""
        for above, price in reversed(self.tiers):
            if prompt_tokens > above:
                return price
        return self

    def per_million_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: round(getattr(self, name) / _PER_TOKEN, 6) for name in CLASSES}
        if self.tiers:
            out["tiers"] = [{"above": above, **price.per_million_dict()} for above, price in self.tiers]
        return out


@dataclass(frozen=True, slots=True)
class Priced:
    """A deployment's price and where it came from (recorded with every ledger row), and the prices of the
    service tiers that differ from it (OpenAI's `priority`, `flex`: the tier the provider says it served)."""

    price: Price
    source: str
    service_tiers: Mapping[str, Price] = field(default_factory=dict)

    def for_tier(self, tier: str) -> tuple[Price, str]:
        """The price and source of a request served at `tier` ("" or an unknown tier: the default)."""
        price = self.service_tiers.get(tier) if tier else None
        if price is None:
            return self.price, self.source
        return price, f"{self.source} (service_tier {tier})"


class PriceDatabase(Protocol):
    """The bundled price database (usage.price_db.GenaiPrices in production)."""

    version: str

    def find(self, model: str, catalog: str, url: str) -> Priced | None: ...


class Deployed(Protocol):
    """What pricing needs of a routing.catalog.Deployment."""

    @property
    def id(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def provider(self) -> Provider: ...


@dataclass
class Hints:
    """What the config says about one deployment's price."""

    price_as: str | None = None
    pricing: Price | None = None
    public: list[str] = field(default_factory=list)  # names clients use for it


class PriceBook:
    """Prices per deployment: resolved once, memoised; counts and warns about what has no price."""

    def __init__(self, database: PriceDatabase | None, overrides: Mapping[str, Price] | None = None,
                 hints: Mapping[str, Hints] | None = None, reject_unknown: bool = False) -> None:
        self.database = database
        self.overrides = dict(overrides or {})
        self.hints = dict(hints or {})
        self.reject_unknown = reject_unknown
        self._memo: dict[str, Priced | None] = {}
        self._warned: set[str] = set()
        self.on_unpriced: Callable[[str], None] | None = None  # the unpriced-requests counter, by model

    @property
    def version(self) -> str:
        return self.database.version if self.database is not None else ""

    def for_deployment(self, dep: Deployed) -> Priced | None:
        """The deployment's price, or None when it is unknown (one dict lookup once resolved)."""
        memo = self._memo
        try:
            return memo[dep.id]
        except KeyError:
            pass
        found = self._resolve(dep)
        if len(memo) >= _MEMO_LIMIT:  # client-chosen names behind a wildcard provider: keep memory bounded
            memo.clear()
        memo[dep.id] = found
        return found

    def preload(self, deployments: Iterable[Deployed]) -> list[str]:
        """Resolve the configured deployments now (at start-up); returns the ids of those with no price."""
        unpriced = [dep.id for dep in deployments if self.for_deployment(dep) is None]
        if unpriced:
            log.warning("no price is known for %d deployment(s): %s; their requests are counted in "
                        "llm_gateway_unpriced_requests_total (set price_as or pricing to price them)",
                        len(unpriced), ", ".join(sorted(unpriced)[:20]))
        return unpriced

    def for_model(self, model: str) -> Priced | None:
        """A model with no deployment (a request that failed before routing): `pricing.models` only."""
        price = self.overrides.get(model)
        return Priced(price, f"config pricing.models[{model}]") if price is not None else None

    def unpriced(self, model: str) -> None:
        """A request with usage had no price: count it, and warn once per model."""
        if self.on_unpriced is not None:
            self.on_unpriced(model)
        if model not in self._warned and len(self._warned) < _MEMO_LIMIT:
            self._warned.add(model)
            log.warning("no price is known for model %r: its requests are recorded at $0 and counted in "
                        "llm_gateway_unpriced_requests_total; set price_as or pricing for it", model)

    def _resolve(self, dep: Deployed) -> Priced | None:
        provider = dep.provider
        hints = self.hints.get(dep.id) or self.hints.get(f"{provider.name}/{dep.model}") or Hints()
        if hints.pricing is not None:
            return Priced(hints.pricing, f"config deployment {dep.id}")
        key = f"{provider.name}/{dep.model}"
        if key in self.overrides:
            return Priced(self.overrides[key], f"config pricing.models[{key}]")
        if hints.price_as:
            found = self._by_name(hints.price_as, provider)
            if found is None:
                log.warning("deployment %s: price_as %r is not a known model", dep.id, hints.price_as)
            return found
        names = [dep.model]
        if provider.prices_by_public_name:
            names += [n for n in hints.public if n != dep.model]
        for name in names:
            found = self._by_name(name, provider)
            if found is not None:
                return found
        return None

    def _by_name(self, name: str, provider: Provider) -> Priced | None:
        short = name.rsplit("/", 1)[-1]  # `models/gemini-2.5-pro`, an inference-profile ARN, `ns/model`
        for key in dict.fromkeys((f"{provider.name}/{name}", name, short)):
            if key in self.overrides:
                return Priced(self.overrides[key], f"config pricing.models[{key}]")
        if self.database is None:
            return None
        catalog = provider.price_catalog
        url = "" if catalog else provider.price_url
        for candidate in dict.fromkeys((name, short)):
            found = self.database.find(candidate, catalog, url)
            if found is not None:
                return found
        return None


def _price(config: PriceConfig) -> Price:
    return Price.per_million(config.model_dump())


def book_from_config(config: GatewayConfig, database: PriceDatabase | None) -> PriceBook:
    """The price book of a configuration: `pricing.models`, and each deployment's `price_as` / `pricing` and
    public names, keyed by the deployment's id (as routing.catalog names deployments)."""
    hints: dict[str, Hints] = {}

    def hint(dep_id: str, public: str, price_as: str | None, pricing: PriceConfig | None) -> None:
        found = hints.setdefault(dep_id, Hints())
        found.public.append(public)
        found.price_as = found.price_as or price_as
        if found.pricing is None and pricing is not None:
            found.pricing = _price(pricing)

    for provider in config.providers:
        for entry in provider.model_entries():
            if entry.name != "*":
                hint(f"{provider.name}/{entry.model or entry.name}", entry.name, entry.price_as, entry.pricing)
    for alias, group in config.models.items():
        for dep in group.deployments:
            hint(dep.name or f"{dep.provider}/{dep.model}", alias, dep.price_as, dep.pricing)
    overrides = {name: _price(p) for name, p in config.pricing.models.items()}
    return PriceBook(database, overrides, hints, reject_unknown=config.pricing.unknown == "reject")
