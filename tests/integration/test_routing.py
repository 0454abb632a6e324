"""Routing through a real gateway process: load balancing, the x-gateway extension, the seeds' routing, hedging."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess, launch, metric_value
from tests.upstream import Upstream, UpstreamThread

MESSAGES = [{"role": "user", "content": "Say hello"}]


def provider(name: str, upstream: Upstream, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "openai-compatible", "base_url": f"{upstream.url}/v1", **extra}


def chat(gw: GatewayProcess, model: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.v1}/chat/completions", json={"model": model, "messages": MESSAGES, **body},
                      headers=headers or {}, timeout=10)


@pytest.fixture(scope="module")
def second_upstream() -> Iterator[Upstream]:
    server = UpstreamThread()
    yield server.start()
    server.stop()


def _hedge_group(hedge: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"deployments": [{"provider": "slow", "model": "ttft-400"},
                                           {"provider": "fast", "model": "quick"}]}
    if hedge:
        out["hedge"] = {"enabled": True, "delay_s": 0.05}
    return out


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream,
       second_upstream: Upstream) -> Iterator[GatewayProcess]:
    """One gateway for every test here (starting one costs seconds): each test uses its own model names."""
    gateway = launch([], tmp_path_factory.mktemp("routing"), config={
        "providers": [provider("a", upstream, models=["gpt-4o"]), provider("b", upstream),
                      provider("primary", upstream), provider("backup", second_upstream),
                      provider("slow", upstream), provider("fast", second_upstream)],
        "models": {
            "lb": {"deployments": [{"provider": "a", "model": "lb-a", "weight": 1},
                                   {"provider": "a", "model": "lb-b", "weight": 3}]},
            "smart": {"deployments": [{"provider": "b", "model": "smart-model"}]},
            "broken": {"deployments": [{"provider": "a", "model": "error-503"}]},
            "plain": _hedge_group(False), "hedged": _hedge_group(True)},
        "routing": {"defaultProvider": "primary", "fallbackChain": ["primary", "backup"],
                    "modelMappings": {"error-500": {"backup": "backup-model"}}}})
    yield gateway
    gateway.stop(signal.SIGKILL)


def test_weighted_load_balancing_over_http(gw: GatewayProcess) -> None:
    with httpx.Client(timeout=10) as c:
        counts = Counter(c.post(f"{gw.v1}/chat/completions", json={"model": "lb", "messages": MESSAGES})
                         .headers["x-gateway-deployment"] for _ in range(200))
    # expected 50 / 150; binomial sd ~6.1: a 4-sigma band
    assert set(counts) == {"a/lb-a", "a/lb-b"} and abs(counts["a/lb-a"] - 50) <= 25


def test_x_gateway_extension_body_and_headers(gw: GatewayProcess, upstream: Upstream) -> None:
    r = chat(gw, "gpt-4o", **{"x-gateway": {"provider": "b", "metadata": {"team": "x"}, "cache": False}})
    assert r.status_code == 200 and r.headers["x-gateway-provider"] == "b"
    assert r.headers["x-gateway-deployment"] == "b/gpt-4o"
    sent = upstream.requests[-1]
    assert "x-gateway" not in sent.body and sent.body["messages"] == MESSAGES, "the extension is not forwarded"
    assert b"x-gateway" not in sent.raw
    r = chat(gw, "broken", headers={"x-gateway-fallbacks": "smart", "x-gateway-retries": "0"})
    assert r.status_code == 200 and r.headers["x-gateway-deployment"] == "b/smart-model"
    assert r.headers["x-gateway-attempts"] == "2"
    assert chat(gw, "broken").status_code == 503, "without the header: no fallback configured"
    started = time.monotonic()
    r = chat(gw, "a/hang", headers={"x-gateway-timeout": "0.3"})
    assert r.status_code == 504 and time.monotonic() - started < 2
    started = time.monotonic()  # the per-request idle limit ends a silent stream with an error event
    r = chat(gw, "a/stall-stream", stream=True, **{"x-gateway": {"timeout": {"idle": 0.3}}})
    assert r.status_code == 200 and "upstream_timeout" in r.text.rsplit("data: ", 1)[1]
    assert time.monotonic() - started < 2
    r = chat(gw, "gpt-4o", headers={"x-gateway-provider": "nope"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_gateway_option"
    r = chat(gw, "gpt-4o", **{"x-gateway": {"timeout": "soon"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-gateway.timeout"


def test_seed_routing_default_provider_mappings_and_fallback_chain(gw: GatewayProcess,
                                                                   second_upstream: Upstream) -> None:
    r = chat(gw, "any-model")
    assert r.status_code == 200 and r.headers["x-gateway-deployment"] == "primary/any-model"
    r = chat(gw, "error-500")  # the primary fails: the chain's next provider, under its mapped name
    assert r.status_code == 200 and r.headers["x-gateway-deployment"] == "backup/backup-model"
    assert second_upstream.requests[-1].body["model"] == "backup-model"


async def _latencies(gw: GatewayProcess, model: str, n: int) -> list[float]:
    sem = asyncio.Semaphore(8)

    async with httpx.AsyncClient(timeout=10) as client:
        async def one(i: int) -> float:
            async with sem:
                started = time.perf_counter()
                r = await client.post(f"{gw.v1}/chat/completions",
                                      json={"model": model, "messages": MESSAGES, "stream": i % 2 == 0})
                assert r.status_code == 200, r.text
                return time.perf_counter() - started
        return await asyncio.gather(*(one(i) for i in range(n)))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def test_hedging_cuts_p99_with_one_slow_upstream(gw: GatewayProcess) -> None:
    before = metric_value(httpx.get(f"{gw.url}/metrics").text, "tokens_total")
    plain = await _latencies(gw, "plain", 40)
    hedged = await _latencies(gw, "hedged", 40)
    print(f"p99 without hedging {p99(plain) * 1000:.0f} ms, with hedging {p99(hedged) * 1000:.0f} ms")
    assert p99(plain) >= 0.4, "half the requests go to the slow deployment"
    assert p99(hedged) < 0.3, "the hedge answers after ~50 ms instead of 400 ms"
    status = httpx.get(f"{gw.url}/api/v1/providers/status").json()
    assert all(d["in_flight"] == 0 for d in status["deployments"]), "cancelled losers give their slot back"
    metrics = httpx.get(f"{gw.url}/metrics").text
    # only winners are billed: 80 answers of 16 tokens each, although some slow attempts were also started
    assert metric_value(metrics, "tokens_total") - before == 80 * 16
    # ... and every attempt is recorded: the hedges, and the slow attempts they beat (cancelled)
    hedges = metric_value(metrics, "llm_gateway_hedges_total", {"provider": "fast"})
    cancelled = metric_value(metrics, "llm_gateway_provider_errors_total",
                             {"provider": "slow", "type": "cancelled"})
    assert 10 <= hedges <= 40 and cancelled == hedges
