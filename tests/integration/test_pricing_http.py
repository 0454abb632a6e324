"""Prices through real gateway processes: budgets bind on Bedrock and Azure deployments (which were priced $0),
the ledger keeps each token class and the price's source, unpriced requests are counted, warned about once,
and refused with `pricing.unknown: reject` when the caller has a budget."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess, metric_value
from tests.providers.replay import ReplayServer, Reply
from tests.upstream import Upstream

MASTER = "mk-pricing-master-51c0"
MESSAGES = [{"role": "user", "content": "Say hello"}]
SONNET_PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
# Bedrock's answer: 1,000 tokens in (of which 600 written to the cache for an hour), 2,000 out. At the regional
# Sonnet 4.5 list prices (USD per 1M: input 3.30, 1-hour cache write 6.60, output 16.50) that is
# 400*3.3 + 600*6.6 + 2000*16.5 = 1320 + 3960 + 33000 = $0.03828 per call, worked out by hand.
BEDROCK_REPLY = {"output": {"message": {"role": "assistant", "content": [{"text": "Hello!"}]}},
                 "stopReason": "end_turn",
                 "usage": {"inputTokens": 400, "outputTokens": 2000, "totalTokens": 3000,
                           "cacheWriteInputTokens": 600, "cacheDetails": [{"ttl": "1h", "inputTokens": 600}]},
                 "metrics": {"latencyMs": 10}}
BEDROCK_COST = 0.03828
# Azure's answer: 1,000 in (200 of them cached), 2,000 out, on a deployment clients call gpt-4o
# (USD per 1M: 2.50 / cached 1.25 / 10): 800*2.5 + 200*1.25 + 2000*10 = $0.02225 per call.
AZURE_REPLY = {"id": "chatcmpl-az", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000,
                         "prompt_tokens_details": {"cached_tokens": 200}}}
AZURE_COST = 0.02225
LOCAL_REPLY = {**AZURE_REPLY, "model": "llama-local"}


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


def config(replay: ReplayServer, db: Path, **extra: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "aws", "type": "bedrock", "base_url": f"{replay.url}/bedrock",
             "options": {"region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret"},
             "models": [{"name": "sonnet", "model": SONNET_PROFILE}]},
            {"name": "az", "type": "azure", "base_url": f"{replay.url}/azure", "api_key": "az-key",
             "models": [{"name": "gpt-4o", "model": "prod-east"}]},
            {"name": "local", "type": "openai-compatible", "base_url": f"{replay.url}/v1",
             "models": ["llama-local"]},
        ],
        "database": {"url": f"sqlite:///{db}", "ledger_flush_interval_s": 0.1},
        "auth": {"key_cache_ttl_s": 0.3},
        **extra,
    }


def admin(gw: GatewayProcess, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.url}/api/v1/{path}", headers={"authorization": f"Bearer {MASTER}"}, **kw)


def chat(gw: GatewayProcess, secret: str, model: str) -> httpx.Response:
    return httpx.post(f"{gw.v1}/chat/completions", headers={"authorization": f"Bearer {secret}"},
                      json={"model": model, "messages": MESSAGES, "max_tokens": 10}, timeout=30)


def calls_until_refused(gw: GatewayProcess, secret: str, model: str, most: int = 10) -> list[int]:
    statuses = []
    for _ in range(most):
        response = chat(gw, secret, model)
        statuses.append(response.status_code)
        if response.status_code != 200:
            assert response.json()["error"]["code"] == "budget_exceeded", response.text
            break
    return statuses


def ledger_rows(db: Path, model: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:  # the ledger is written in batches off the request path
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute("SELECT * FROM gw_usage WHERE model = ? AND status = 200",
                                                   (model,))]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def usage_totals(gw: GatewayProcess, model: str, requests: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        totals: dict[str, Any] = admin(gw, "GET", "usage", params={"model": model}).json()["totals"]
        if totals["total_requests"] >= requests or time.monotonic() > deadline:
            return totals
        time.sleep(0.1)


@pytest.mark.parametrize(("model", "reply", "cost"), [("sonnet", BEDROCK_REPLY, BEDROCK_COST),
                                                      ("gpt-4o", AZURE_REPLY, AZURE_COST)],
                         ids=["bedrock", "azure"])
def test_a_budget_binds_on_bedrock_and_azure_deployments(
        gateway_factory: Callable[..., GatewayProcess], replay: ReplayServer, tmp_path: Path,
        model: str, reply: dict[str, Any], cost: float) -> None:
    replay.reply = Reply(200, json.dumps(reply).encode())
    db = tmp_path / "gw.db"
    gw = gateway_factory([], config=config(replay, db), env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    budget = 0.05
    key = admin(gw, "POST", "keys", json={"budget_usd": budget}).json()
    statuses = calls_until_refused(gw, key["key"], model)
    admitted = statuses.count(200)
    # admitted while the spend before the call was under the budget: ceil(budget / cost) calls, then refused
    assert statuses == [200] * admitted + [429] and admitted == -(-budget // cost), statuses
    rows = ledger_rows(db, model, admitted)
    assert len(rows) == admitted
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(admitted * cost)
    row = rows[0]
    assert row["price_source"].startswith("genai-prices 0.2.")
    if model == "sonnet":
        assert row["price_source"].endswith("aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0")
        assert (row["prompt_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"],
                row["completion_tokens"]) == (1000, 600, 600, 2000)
    else:
        assert row["price_source"].endswith("azure/gpt-4o")
        assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (1000, 200, 2000)
    totals = usage_totals(gw, model, admitted + 1)
    assert totals["unpriced_requests"] == 0 and totals["total_cost"] == pytest.approx(admitted * cost)
    assert totals["cache_write_tokens"] == (600 * admitted if model == "sonnet" else 0)
    spend = admin(gw, "GET", "spend", params={"kind": "key"}).json()["data"]
    assert spend[0]["spent_usd"] == pytest.approx(admitted * cost)


def test_unpriced_requests_are_counted_and_refused_for_budgets_with_reject(
        gateway_factory: Callable[..., GatewayProcess], replay: ReplayServer, tmp_path: Path) -> None:
    replay.reply = Reply(200, json.dumps(LOCAL_REPLY).encode())
    gw = gateway_factory([], config=config(replay, tmp_path / "allow.db"), env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    budgeted = admin(gw, "POST", "keys", json={"budget_usd": 1.0}).json()["key"]
    for _ in range(3):  # allow (the default): served, recorded at $0, counted
        assert chat(gw, budgeted, "llama-local").status_code == 200
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_unpriced_requests_total", {"model": "llama-local"}) == 3
    assert metric_value(metrics, "llm_gateway_unpriced_requests_total", {"model": "gpt-4o"}) == 0
    totals = usage_totals(gw, "llama-local", 3)
    assert (totals["unpriced_requests"], totals["total_cost"], totals["cached_tokens"]) == (3, 0.0, 600)
    gw.stop()
    assert gw.log().count("no price is known for model 'llama-local'") == 1  # one warning per model

    strict = config(replay, tmp_path / "reject.db", pricing={"unknown": "reject"})
    gw = gateway_factory([], config=strict, env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    budgeted = admin(gw, "POST", "keys", json={"budget_usd": 1.0}).json()["key"]
    unbudgeted = admin(gw, "POST", "keys", json={}).json()["key"]
    refused = chat(gw, budgeted, "llama-local")
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "model_not_priced" and "llama-local" in error["message"] and error["param"] == "model"
    assert chat(gw, unbudgeted, "llama-local").status_code == 200  # no budget: nothing to protect
    replay.reply = Reply(200, json.dumps(AZURE_REPLY).encode())
    assert chat(gw, budgeted, "gpt-4o").status_code == 200  # a priced model is served to the budgeted key
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_unpriced_requests_total", {"model": "llama-local"}) == 1


def test_reject_covers_every_deployment_a_budgeted_request_may_reach(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path) -> None:
    """A fallback (configured or asked for) or a pinned provider may serve the request too: with
    `pricing.unknown: reject` an unpriced one must not serve a key with a budget at $0."""
    up = {"type": "openai-compatible", "base_url": f"{upstream.url}/v1", "models": ["*"]}
    gw = gateway_factory([], env={"LLM_GATEWAY_MASTER_KEY": MASTER}, config={
        "providers": [{"name": "up", **up}, {"name": "other", **up}],
        "models": {"priced": {"deployments": [{"provider": "up", "model": "gpt-4o-mini"}]},
                   "free": {"deployments": [{"provider": "up", "model": "llama-local"}]},
                   "flaky": {"retries": 0, "deployments": [{"provider": "up", "model": "error-503"}],
                             "fallbacks": ["free"]}},
        "pricing": {"unknown": "reject", "models": {"gpt-4o-mini": {"input": 1, "output": 1},
                                                    "error-503": {"input": 1, "output": 1}}},
        "database": {"url": f"sqlite:///{tmp_path / 'fallbacks.db'}"}})
    made = admin(gw, "POST", "keys", json={"budget_usd": 1.0, "allow_overrides": True})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    before = len(upstream.requests)
    answers = [httpx.post(f"{gw.v1}/chat/completions", headers={"authorization": f"Bearer {key}", **headers},
                          json={"model": model, "messages": MESSAGES, "max_tokens": 10}, timeout=30)
               for model, headers in (("flaky", {}), ("priced", {"x-gateway-provider": "other"}),
                                      ("error-503", {"x-gateway-fallbacks": "free"}))]
    assert [(r.status_code, r.json().get("error", {}).get("code")) for r in answers] == [
        (403, "model_not_priced")] * 3
    assert [req.body["model"] for req in upstream.requests[before:]] == []  # refused before anything was spent
    assert chat(gw, key, "priced").status_code == 200


# OpenAI's answer processed at the priority tier (genai-prices, gpt-4o priority, USD per 1M: input 4.25, output
# 17, against 2.50 / 10 by default): 1000*4.25 + 2000*17 = $0.03825 per call, worked out by hand.
PRIORITY_REPLY = {**AZURE_REPLY, "service_tier": "priority",
                  "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000}}
PRIORITY_COST = 0.03825


def _priority_stream() -> bytes:
    base = {"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
            "service_tier": "priority"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                    "finish_reason": None}], "usage": None},
              {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
              {**base, "choices": [], "usage": PRIORITY_REPLY["usage"]}]
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def test_the_priority_service_tier_is_charged_at_its_price(
        gateway_factory: Callable[..., GatewayProcess], replay: ReplayServer, tmp_path: Path) -> None:
    """A client that asks OpenAI for `service_tier: priority` is billed 1.7 times the default price: the ledger
    and the budget must see that, not the default price."""
    db = tmp_path / "tier.db"
    gw, key = _openai_with_a_budgeted_key(gateway_factory, replay, db)
    body = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 10, "service_tier": "priority"}
    headers = {"authorization": f"Bearer {key['key']}"}
    replay.reply = Reply(200, json.dumps(PRIORITY_REPLY).encode())
    assert httpx.post(f"{gw.v1}/chat/completions", json=body, headers=headers, timeout=30).status_code == 200
    replay.reply = Reply(200, _priority_stream(), content_type="text/event-stream")
    streamed = httpx.post(f"{gw.v1}/chat/completions", json={**body, "stream": True}, headers=headers, timeout=30)
    assert streamed.status_code == 200 and '"usage"' not in streamed.text  # the client did not ask for it
    rows = ledger_rows(db, "gpt-4o", 2)
    assert [r["cost_usd"] for r in rows] == pytest.approx([PRIORITY_COST, PRIORITY_COST])
    assert all(r["price_source"].endswith("openai/gpt-4o (service_tier priority)") for r in rows), rows
    spend = admin(gw, "GET", "spend", params={"kind": "key"}).json()["data"]
    assert spend[0]["spent_usd"] == pytest.approx(2 * PRIORITY_COST)


def _openai_with_a_budgeted_key(gateway_factory: Callable[..., GatewayProcess], replay: ReplayServer,
                                db: Path) -> tuple[GatewayProcess, dict[str, Any]]:
    """A gateway with one OpenAI provider (gpt-4o) in front of `replay`, and a key with a $1 budget."""
    config = {"providers": [{"name": "oa", "type": "openai", "base_url": f"{replay.url}/v1", "api_key": "sk-oa",
                             "models": ["gpt-4o"]}],
              "database": {"url": f"sqlite:///{db}", "ledger_flush_interval_s": 0.1}}
    gw = gateway_factory([], config=config, env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    return gw, admin(gw, "POST", "keys", json={"budget_usd": 1.0}).json()


# OpenAI's Response after two web_search tool calls: gpt-4o (USD per 1M: input 2.50, output 10) and $10 per
# 1,000 searches: 1000*2.5/1e6 + 2000*10/1e6 + 2*0.01 = $0.0425, worked out by hand.
SEARCHED = {"id": "resp_up", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4o",
            "output": [{"type": "web_search_call", "id": "ws_1", "status": "completed",
                        "action": {"type": "search", "query": "a"}},
                       {"type": "web_search_call", "id": "ws_2", "status": "completed",
                        "action": {"type": "search", "query": "b"}},
                       {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "Found", "annotations": []}]}],
            "usage": {"input_tokens": 1000, "output_tokens": 2000, "total_tokens": 3000}}
SEARCHED_COST = 0.0425


def test_web_search_calls_of_a_native_response_are_charged(
        gateway_factory: Callable[..., GatewayProcess], replay: ReplayServer, tmp_path: Path) -> None:
    """OpenAI bills each web_search call of the Responses API ($10 per 1,000) beside the tokens; a native
    deployment gets the tool as sent, so the calls were made and billed but left out of the record."""
    db = tmp_path / "search.db"
    gw, key = _openai_with_a_budgeted_key(gateway_factory, replay, db)
    replay.reply = Reply(200, json.dumps(SEARCHED).encode())
    answer = httpx.post(f"{gw.v1}/responses", headers={"authorization": f"Bearer {key['key']}"}, timeout=30,
                        json={"model": "gpt-4o", "input": "news?", "tools": [{"type": "web_search"}]})
    assert answer.status_code == 200, answer.text
    rows = ledger_rows(db, "gpt-4o", 1)
    assert [r["cost_usd"] for r in rows] == pytest.approx([SEARCHED_COST])
    spend = admin(gw, "GET", "spend", params={"kind": "key"}).json()["data"]
    assert spend[0]["spent_usd"] == pytest.approx(SEARCHED_COST)
