"""Load-balancing strategies and the catalog's routes (aliases, the seeds' defaultProvider/modelMappings/chain)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from llm_gateway.providers.registry import build_provider
from llm_gateway.routing.catalog import Catalog, Deployment
from llm_gateway.routing.strategies import CostOrdered, LeastInFlight, LowestLatency, Weighted
from llm_gateway.settings import ConfigError, ProviderConfig, parse_config


def provider(name: str, models: list[str] | None = None) -> object:
    return build_provider(ProviderConfig(name=name, type="openai-compatible", base_url=f"http://{name}:1",
                                         models=list(models or [])))


def deps(*weights: float) -> list[Deployment]:
    p = provider("p")
    return [Deployment(p, f"m{i}", w) for i, w in enumerate(weights)]  # type: ignore[arg-type]


def test_weighted_random_follows_weights_over_1000_picks() -> None:
    group = deps(1, 3, 6)
    strategy = Weighted(random.Random(7))
    counts = Counter(strategy.order(group)[0].model for _ in range(1000))
    # expected 100 / 300 / 600; 4 sigma of a binomial(1000, p) is at most ~63
    assert abs(counts["m0"] - 100) < 40 and abs(counts["m1"] - 300) < 60 and abs(counts["m2"] - 600) < 63
    order = strategy.order(group)
    assert sorted(d.model for d in order) == ["m0", "m1", "m2"], "every deployment stays available for retries"


def test_least_in_flight_prefers_idle_and_spreads_ties() -> None:
    group = deps(1, 1, 1)
    group[0].in_flight, group[1].in_flight, group[2].in_flight = 3, 0, 1
    strategy = LeastInFlight(random.Random(1))
    assert [d.model for d in strategy.order(group)] == ["m1", "m2", "m0"]
    for d in group:
        d.in_flight = 0
    counts = Counter(strategy.order(group)[0].model for _ in range(900))
    assert all(250 < counts[m] < 350 for m in ("m0", "m1", "m2"))


def test_least_in_flight_counts_relative_to_weight() -> None:
    group = deps(1, 4)
    group[0].in_flight, group[1].in_flight = 1, 3  # 1/1 > 3/4
    assert LeastInFlight().order(group)[0].model == "m1"


def test_lowest_latency_uses_ewma_of_ttft_and_measures_unknown_first() -> None:
    group = deps(1, 1, 1)
    for _ in range(20):
        group[0].observe_ttft(0.30)
        group[1].observe_ttft(0.05)
    assert group[1].ewma_ttft == pytest.approx(0.05)
    assert [d.model for d in LowestLatency().order(group)] == ["m2", "m1", "m0"]
    group[1].observe_ttft(1.0)  # one slow answer moves the average by alpha (0.2), not all the way
    assert group[1].ewma_ttft == pytest.approx(0.05 + 0.2 * 0.95)


def test_cost_ordered_cheapest_first_unpriced_last() -> None:
    group = deps(1, 1, 1)
    group[0].cost, group[1].cost, group[2].cost = None, 5.0, 0.5
    assert [d.model for d in CostOrdered().order(group)] == ["m2", "m1", "m0"]


def test_p95_ttft_needs_samples_and_keeps_a_window() -> None:
    d = deps(1)[0]
    assert d.p95_ttft() is None
    for i in range(100):
        d.observe_ttft(i / 100)
    assert len(d.ttfts) == 64
    assert d.p95_ttft() == pytest.approx(0.96)


def _catalog(raw: dict[str, object]) -> Catalog:
    cfg = parse_config(raw)
    providers = {p.name: build_provider(p) for p in cfg.providers}
    return Catalog(providers, cfg.models, cfg.routing)


PROVIDERS = [{"name": "a", "type": "openai-compatible", "base_url": "http://a:1", "models": ["gpt-4o"]},
             {"name": "b", "type": "openai-compatible", "base_url": "http://b:1"},
             {"name": "c", "type": "openai-compatible", "base_url": "http://c:1"}]


def test_aliases_share_deployment_state_and_carry_strategy() -> None:
    cat = _catalog({"providers": PROVIDERS, "models": {
        "fast": {"strategy": "least-in-flight", "retries": 2, "fallbacks": ["smart"],
                 "deployments": [{"provider": "a", "model": "gpt-4o"}, {"provider": "b", "model": "x", "weight": 3}]},
        "smart": {"deployments": [{"provider": "a", "model": "gpt-4o"}]}}})
    fast, smart = cat.resolve("fast"), cat.resolve("smart")
    assert fast is not None and smart is not None
    assert fast.strategy.name == "least-in-flight" and fast.retries == 2 and fast.fallbacks == ["smart"]
    assert fast.deployments[0] is smart.deployments[0] is cat.resolve("gpt-4o").deployments[0]  # type: ignore[union-attr]
    assert fast.deployments[1].weight == 3


def test_seed_routing_default_provider_mappings_and_fallback_chain() -> None:
    cat = _catalog({"providers": PROVIDERS, "routing": {
        "defaultProvider": "b", "fallbackChain": ["a", "b", "c"],
        "modelMappings": {"gpt-4o": {"c": "claude-3-5-sonnet"}, "llama": {"b": "llama-3.1-8b"}}}})
    gpt = cat.resolve("gpt-4o")  # served by a; the chain adds b and c (mapped)
    assert gpt is not None
    assert [d.id for d in gpt.deployments] == ["a/gpt-4o"]
    assert [r.deployments[0].id for r in gpt.chain] == ["b/gpt-4o", "c/claude-3-5-sonnet"]
    llama = cat.resolve("llama")  # nobody lists it: the default provider, under its mapped name
    assert llama is not None and llama.deployments[0].id == "b/llama-3.1-8b"
    assert [r.deployments[0].id for r in llama.chain] == ["a/llama", "c/llama"]
    assert cat.resolve("llama") is llama, "dynamic routes are built once"


def test_pinned_provider_restricts_or_targets() -> None:
    cat = _catalog({"providers": PROVIDERS, "models": {"fast": {"deployments": [
        {"provider": "a", "model": "gpt-4o"}, {"provider": "b", "model": "x"}]}}})
    fast = cat.resolve("fast")
    assert fast is not None
    assert [d.id for d in cat.pinned(fast, "b").deployments] == ["b/x"]  # type: ignore[union-attr]
    assert [d.id for d in cat.pinned(fast, "c").deployments] == ["c/fast"]  # type: ignore[union-attr]
    assert cat.pinned(fast, "nope") is None


def test_config_rejects_unknown_references() -> None:
    with pytest.raises(ConfigError, match=r"routing\.fallbackChain: unknown provider 'zz'"):
        parse_config({"providers": PROVIDERS, "routing": {"fallbackChain": ["zz"]}})
    with pytest.raises(ConfigError, match="context_window_fallbacks: unknown model alias 'big'"):
        parse_config({"providers": PROVIDERS, "models": {"m": {"context_window_fallbacks": ["big"],
                                                               "deployments": [{"provider": "a", "model": "x"}]}}})
    with pytest.raises(ConfigError, match="strategy"):
        parse_config({"providers": PROVIDERS, "models": {"m": {"strategy": "round-robin",
                                                               "deployments": [{"provider": "a", "model": "x"}]}}})


def test_dynamic_routes_stay_bounded_and_keep_configured_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("llm_gateway.routing.catalog._MAX_DYNAMIC_ROUTES", 10)
    cat = _catalog({"providers": [*PROVIDERS, {"name": "w", "type": "openai-compatible", "base_url": "http://w:1",
                                               "models": ["*"]}],
                    "models": {"fast": {"deployments": [{"provider": "b", "model": "x"}]}}})
    for i in range(25):
        route = cat.resolve(f"client-chosen-{i}")
        assert route is not None and route.deployments[0].id == f"w/client-chosen-{i}"
    assert len(cat._dynamic) <= 10 and len(cat.deployments) <= 10 + 2
    assert {"a/gpt-4o", "b/x"} <= set(cat.deployments)
