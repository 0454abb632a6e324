"""`GET /api/v1/usage` as the Go seed's users read it (totals at the top level), keyless and with a master key, and
`x-gateway.metadata` kept with each ledger row: reports filtered and grouped by one of its keys."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess
from tests.pg import fresh_schema
from tests.upstream import Upstream


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema("configs_usage") as url:
        yield url


def config(upstream: Upstream, **extra: Any) -> dict[str, Any]:
    return {"providers": [{"name": "local", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                           "models": ["gpt-4o"]}],
            "cache": {"enabled": True}, **extra}


def run_sequence(gw: GatewayProcess, key: str) -> None:
    """A miss and a hit tagged feature=chat, a miss tagged feature=search: 3 requests, 2 of them upstream."""
    client = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0)
    for content, feature in (("first", "chat"), ("first", "chat"), ("second", "search")):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": content}],
                                       extra_body={"x-gateway": {"metadata": {"feature": feature}}})


def report(gw: GatewayProcess, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:  # the ledger writes off the request path, in batches
        r = httpx.get(f"{gw.url}/api/v1/usage", params=params, headers=headers or {})
        if r.status_code != 200 or r.json()["totals"]["total_requests"] >= 3 or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def check_go_shape(body: dict[str, Any]) -> None:
    # 2 upstream answers of 11 prompt + 5 completion tokens, and one cache hit recorded with the same usage
    assert {k: body[k] for k in ("total_requests", "total_tokens", "cache_hits", "cache_misses")} == {
        "total_requests": 3, "total_tokens": 48, "cache_hits": 1, "cache_misses": 2}
    assert body["total_cost"] == body["totals"]["total_cost"] and body["total_cost"] > 0
    assert body["totals"]["prompt_tokens"] == 33


def test_keyless_usage_is_open_and_aggregate(gateway_factory: Callable[..., GatewayProcess],
                                             upstream: Upstream) -> None:
    gw = gateway_factory(config=config(upstream))
    run_sequence(gw, "sk-anything")
    r = report(gw)
    assert r.status_code == 200, r.text
    check_go_shape(r.json())
    by_feature = report(gw, group_by="metadata.feature").json()
    groups = {g["metadata.feature"]: g["total_requests"] for g in by_feature["groups"]}
    assert groups == {"chat": 2, "search": 1}
    only_chat = httpx.get(f"{gw.url}/api/v1/usage", params={"metadata": "feature:chat"}).json()
    assert only_chat["total_requests"] == 2 and only_chat["cache_hits"] == 1
    private = httpx.get(f"{gw.url}/api/v1/usage", params={"group_by": "user"})
    assert private.status_code == 403 and private.json()["error"]["code"] == "aggregate_only"
    assert httpx.get(f"{gw.url}/api/v1/keys").status_code == 403  # the other admin routes stay off


def test_usage_with_a_master_key_on_postgresql(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                              pg_url: str) -> None:
    gw = gateway_factory(config=config(upstream, auth={"master_key": "sk-master-usage"}, database={"url": pg_url}))
    run_sequence(gw, "sk-master-usage")
    assert httpx.get(f"{gw.url}/api/v1/usage").status_code == 401
    r = report(gw, {"authorization": "Bearer sk-master-usage"})
    assert r.status_code == 200, r.text
    check_go_shape(r.json())
    r = httpx.get(f"{gw.url}/api/v1/usage", params={"group_by": "user"},
                  headers={"authorization": "Bearer sk-master-usage"})
    assert r.status_code == 200
    r = httpx.get(f"{gw.url}/api/v1/usage", params={"group_by": "metadata.feature", "metadata": "feature:search"},
                  headers={"authorization": "Bearer sk-master-usage"})
    assert [(g["metadata.feature"], g["total_requests"]) for g in r.json()["groups"]] == [("search", 1)]
