"""/metrics stays bounded through a real gateway process: model names sent without a valid key, or naming no
configured model, are counted as `unknown`; an authenticated client's many names are capped at
`metrics.max_series` per metric, the rest folded into one `other` series, and no request goes uncounted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
from tests.conftest import GatewayProcess
from tests.upstream import Upstream

MASTER = "mk-metrics-bounded-5e2a"
MESSAGES = [{"role": "user", "content": "hi"}]


def series(text: str, name: str) -> dict[str, float]:
    """Every series of one metric family member: {labels: value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            key, _, value = line.rpartition(" ")
            out[key[len(name):]] = float(value)
    return out


async def send(gw: GatewayProcess, models: list[str], headers: dict[str, str]) -> list[int]:
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        gate = asyncio.Semaphore(20)

        async def one(model: str) -> int:
            async with gate:
                r = await client.post(f"{gw.v1}/chat/completions", headers=headers,
                                      json={"model": model, "messages": MESSAGES})
                return r.status_code
        return await asyncio.gather(*(one(m) for m in models))


async def test_random_model_names_do_not_grow_the_metrics(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    cap = 100
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["gpt-4o-mini"]}],
              "metrics": {"max_series": cap}}
    gw = gateway_factory(config=config, env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    key = {"authorization": f"Bearer {MASTER}"}

    def names(n: int, prefix: str = "") -> list[str]:
        return [f"{prefix}rand-{uuid.uuid4().hex[:10]}" for _ in range(n)]

    assert set(await send(gw, names(1000), {})) == {401}  # no key
    assert set(await send(gw, names(1000), {"authorization": "Bearer sk-wrong"})) == {401}
    assert set(await send(gw, names(1000), key)) == {404}  # a valid key, no such model
    text = httpx.get(f"{gw.url}/metrics").text
    requests = series(text, "llm_gateway_requests_total")
    assert set(requests) == {'{model="unknown",provider="none",status="401"}',
                             '{model="unknown",provider="none",status="404"}'}, list(requests)[:5]
    assert sum(requests.values()) == 3000
    assert "rand-" not in text

    # An authenticated client reaches many real names (`PROVIDER/MODEL`): capped per metric, nothing lost.
    assert set(await send(gw, names(3 * cap, "up/"), key)) == {200}
    text = httpx.get(f"{gw.url}/metrics").text
    requests = series(text, "llm_gateway_requests_total")
    assert len(requests) == cap + 1
    assert requests['{model="other",provider="other",status="other"}'] > 0
    assert sum(requests.values()) == 3000 + 3 * cap
    for name in ("tokens_by_model_total", "tokens_by_user_by_model_total", "llm_gateway_tokens_total",
                 "llm_gateway_request_duration_seconds_count"):
        assert len(series(text, name)) <= cap + 1, name
    # More names add no series: the exposition keeps its size (only the values' digits change).
    assert set(await send(gw, names(3 * cap, "up/"), key)) == {200}
    again = httpx.get(f"{gw.url}/metrics").text
    assert abs(len(again) - len(text)) < 0.01 * len(text) and len(again.splitlines()) == len(text.splitlines())
    assert sum(series(again, "llm_gateway_requests_total").values()) == 3000 + 6 * cap
