"""The response cache through real gateway processes and the `openai` SDK: hits, misses, controls, replay, TTL,
size bound, Redis shared by two gateways, request coalescing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest
import redis
from tests.conftest import GatewayProcess, metric_value, upstream_args
from tests.upstream import Upstream

Factory = Callable[..., GatewayProcess]


def client(gw: GatewayProcess, key: str = "sk-client-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def upstream_calls(upstream: Upstream, text: str) -> int:
    return sum(1 for r in upstream.requests if isinstance(r.body, dict) and r.body.get("messages") == ask(text))


def start(factory: Factory, upstream: Upstream, **cache: Any) -> GatewayProcess:
    return factory(upstream_args(upstream), config={"cache": {"enabled": True, **cache}})


def chat(gw: GatewayProcess, text: str, **kw: Any) -> tuple[str, Any]:
    raw = client(gw).chat.completions.with_raw_response.create(model=kw.pop("model", "m"), messages=ask(text), **kw)
    return raw.headers.get("x-cache", ""), raw.parse()


def test_hit_miss_bypass_and_controls(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream)
    text = f"hello {uuid.uuid4()}"
    status, first = chat(gw, text, user="alice")
    assert status == "MISS"
    status, second = chat(gw, text, user="bob")  # `user` does not change the answer: same key
    assert status == "HIT"
    assert second.choices[0].message.content == first.choices[0].message.content == "The quick brown fox jumps"
    assert second.usage is not None and second.usage.total_tokens == 16
    assert upstream_calls(upstream, text) == 1
    assert chat(gw, text, temperature=0.5)[0] == "MISS"  # an answer-changing parameter: another key
    assert chat(gw, text, extra_body={"x-gateway": {"cache": False}})[0] == "BYPASS"
    assert "x-gateway" not in upstream.requests[-1].body  # the extension never reaches the provider
    assert chat(gw, text, extra_headers={"cache-control": "no-store"})[0] == "BYPASS"
    assert chat(gw, text, extra_headers={"cache-control": "no-cache"})[0] == "BYPASS"
    assert upstream_calls(upstream, text) == 5
    assert chat(gw, text)[0] == "HIT"
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "cache_hits_total", {"model": "m", "kind": "exact"}) == 2
    assert metric_value(metrics, "cache_misses_total", {"model": "m"}) == 2
    assert metric_value(metrics, "llm_gateway_requests_total",
                        {"model": "m", "provider": "cache", "status": "200"}) == 2


def test_never_caches_errors_tool_calls_or_hot_temperatures(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream, max_temperature=1.0)
    text = f"careful {uuid.uuid4()}"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(gw, text, model="error-500")
    assert upstream_calls(upstream, text) == 2
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    assert chat(gw, text, tools=tools)[0] == "MISS"
    status, out = chat(gw, text, tools=tools)
    assert status == "MISS" and out.choices[0].message.tool_calls[0].function.name == "weather"
    assert chat(gw, text, temperature=1.5)[0] == "BYPASS"
    assert upstream_calls(upstream, text) == 5


def _sse_events(gw: GatewayProcess, body: dict[str, Any]) -> tuple[str, list[bytes]]:
    with httpx.stream("POST", f"{gw.v1}/chat/completions", json=body,
                      headers={"authorization": "Bearer sk-client-key"}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        data = b"".join(r.iter_bytes())
        return r.headers["x-cache"], data.split(b"\n\n")


def test_stream_served_from_json_answer_and_back(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream)
    text = f"stream {uuid.uuid4()}"
    assert chat(gw, text)[0] == "MISS"
    raw = client(gw).chat.completions.with_raw_response.create(model="m", messages=ask(text), stream=True,
                                                                stream_options={"include_usage": True})
    assert raw.headers["x-cache"] == "HIT"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The quick brown fox jumps"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 16
    assert all(c.object == "chat.completion.chunk" and c.id == "chatcmpl-test" for c in chunks)
    # Byte level: complete `data: {json}` events, ending with [DONE]; no usage chunk when none was asked for.
    status, events = _sse_events(gw, {"model": "m", "messages": ask(text), "stream": True})
    assert status == "HIT" and events[-2:] == [b"data: [DONE]", b""]
    payloads = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert all(p["choices"] for p in payloads)
    assert upstream_calls(upstream, text) == 1

    other = f"stream-first {uuid.uuid4()}"
    streamed = list(client(gw).chat.completions.create(model="m", messages=ask(other), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "The quick brown fox jumps"
    status, out = chat(gw, other)  # the assembled stream answers a JSON request
    assert status == "HIT" and out.choices[0].message.content == "The quick brown fox jumps"
    assert out.choices[0].finish_reason == "stop" and out.usage is not None and out.usage.total_tokens == 16
    assert upstream_calls(upstream, other) == 1


def test_ttl_per_model_and_per_request(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream, ttl_s=60, models={"short": {"ttl_s": 0.6}})
    text = f"ttl {uuid.uuid4()}"
    assert chat(gw, text, model="short")[0] == "MISS"
    assert chat(gw, text, model="short")[0] == "HIT"
    assert chat(gw, text)[0] == "MISS"
    assert chat(gw, f"{text}!", extra_body={"x-gateway": {"cache_ttl": 0.6}})[0] == "MISS"
    for odd in ("nan", "-inf"):  # not a TTL: not cached (NaN was kept for ever, past max_ttl_s)
        assert chat(gw, f"{text} {odd}", extra_headers={"x-gateway-cache-ttl": odd})[0] == "BYPASS"
    time.sleep(0.7)
    assert chat(gw, text, model="short")[0] == "MISS"  # expired
    assert chat(gw, f"{text}!")[0] == "MISS"  # the per-request TTL expired too
    assert chat(gw, text)[0] == "HIT"  # the model's default TTL is a minute


def test_memory_bound_evicts_least_recently_used(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream, max_size_mb=0.002)  # ~2 KB: three or four answers of ~330 bytes
    texts = [f"evict {i} {uuid.uuid4()}" for i in range(8)]
    for text in texts:
        assert chat(gw, text)[0] == "MISS"
    assert chat(gw, texts[-1])[0] == "HIT"
    assert chat(gw, texts[0])[0] == "MISS"  # long gone
    assert chat(gw, texts[-1])[0] == "HIT"


def test_clear_all_or_by_model_needs_the_master_key(gateway_factory: Factory, upstream: Upstream) -> None:
    master = "sk-master-test"
    gw = gateway_factory(upstream_args(upstream), config={"cache": {"enabled": True},
                                                          "auth": {"master_key": master}})
    text = f"clear {uuid.uuid4()}"

    def ask_as_master(model: str) -> str:
        raw = client(gw, master).chat.completions.with_raw_response.create(model=model, messages=ask(text))
        return raw.headers["x-cache"]

    assert ask_as_master("a") == "MISS" and ask_as_master("b") == "MISS" and ask_as_master("a") == "HIT"
    url = f"{gw.url}/api/v1/cache/clear"
    assert httpx.post(url, json={"model": "a"}).status_code == 401
    r = httpx.post(url, json={"model": "a"}, headers={"authorization": f"Bearer {master}"})
    assert r.status_code == 200 and r.json()["cleared"] == 1
    assert ask_as_master("a") == "MISS" and ask_as_master("b") == "HIT"
    r = httpx.post(url, headers={"authorization": f"Bearer {master}"})
    assert r.status_code == 200 and r.json()["cleared"] == 2
    assert ask_as_master("b") == "MISS"


def test_redis_cache_is_shared_by_two_gateways(gateway_factory: Factory, upstream: Upstream) -> None:
    prefix = f"llmgw-test-cache-{uuid.uuid4().hex[:8]}:"
    config = {"cache": {"enabled": True, "backend": "redis", "redis_prefix": prefix},
              "redis": {"url": "redis://127.0.0.1:6379/9"}}
    one = gateway_factory(upstream_args(upstream), config=config)
    two = gateway_factory(upstream_args(upstream), config=config)
    text = f"shared {uuid.uuid4()}"
    assert chat(one, text)[0] == "MISS"
    store = redis.Redis.from_url("redis://127.0.0.1:6379/9")
    try:
        deadline = time.monotonic() + 5
        while not store.keys(f"{prefix}*") and time.monotonic() < deadline:
            time.sleep(0.01)  # the write lands just after the answer was sent
        status, out = chat(two, text, stream=False)
        assert status == "HIT" and out.choices[0].message.content == "The quick brown fox jumps"
        streamed = client(two).chat.completions.create(model="m", messages=ask(text), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "The quick brown fox jumps"
        assert upstream_calls(upstream, text) == 1
        r = httpx.post(f"{two.url}/api/v1/cache/clear", json={"model": "m"})
        assert r.status_code == 200 and r.json()["cleared"] == 1
        assert chat(one, text)[0] == "MISS"
        # a TTL that is not a number of seconds: not cached (NaN failed the Redis write, an unhandled task error)
        assert chat(one, f"{text} nan", extra_headers={"x-gateway-cache-ttl": "nan"})[0] == "BYPASS"
        time.sleep(0.2)
        assert "Traceback" not in one.log() and "never retrieved" not in one.log()
    finally:
        for name in store.scan_iter(match=f"{prefix}*"):
            store.delete(name)
        store.close()


async def test_fifty_identical_concurrent_requests_make_one_upstream_call(gateway_factory: Factory,
                                                                          upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream)
    text = f"coalesce {uuid.uuid4()}"
    aclient = openai.AsyncOpenAI(base_url=gw.v1, api_key="sk-client-key", max_retries=0,
                                 http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=60)))

    async def one(i: int) -> tuple[str, str]:
        raw = await aclient.chat.completions.with_raw_response.create(
            model="slow-300", messages=ask(text), stream=i % 2 == 0)
        parsed = raw.parse()
        if isinstance(parsed, openai.AsyncStream):
            text_out = "".join([c.choices[0].delta.content or "" async for c in parsed if c.choices])
        else:
            text_out = parsed.choices[0].message.content or ""
        return raw.headers["x-cache"], text_out

    results = await asyncio.gather(*(one(i) for i in range(50)))
    await aclient.close()
    assert upstream_calls(upstream, text) == 1
    assert all(out == "The quick brown fox jumps" for _, out in results)
    assert sorted(status for status, _ in results).count("HIT") == 49
    metrics = httpx.get(f"{gw.url}/metrics").text
    coalesced = metric_value(metrics, "cache_hits_total", {"model": "slow-300", "kind": "coalesced"})
    late = metric_value(metrics, "cache_hits_total", {"model": "slow-300", "kind": "exact"})  # after it landed
    assert coalesced > 0 and coalesced + late == 49
    assert metric_value(metrics, "cache_misses_total", {"model": "slow-300"}) == 1


def test_coalescing_can_be_turned_off(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream, coalesce=False)
    text = f"no-coalesce {uuid.uuid4()}"

    async def run() -> None:
        aclient = openai.AsyncOpenAI(base_url=gw.v1, api_key="sk-client-key", max_retries=0)
        await asyncio.gather(*(aclient.chat.completions.create(model="slow-200", messages=ask(text))
                               for _ in range(3)))
        await aclient.close()

    asyncio.run(run())
    assert upstream_calls(upstream, text) == 3


def test_anthropic_messages_are_cached_too(gateway_factory: Factory, upstream: Upstream) -> None:
    import anthropic

    gw = start(gateway_factory, upstream)
    text = f"anthropic {uuid.uuid4()}"
    c = anthropic.Anthropic(base_url=gw.url, api_key="sk-client-key", max_retries=0)
    first = c.messages.with_raw_response.create(model="m", max_tokens=50, messages=ask(text))  # type: ignore[arg-type]
    second = c.messages.with_raw_response.create(model="m", max_tokens=50, messages=ask(text))  # type: ignore[arg-type]
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.parse().content[0].text == first.parse().content[0].text == "The quick brown fox jumps"
    with c.messages.stream(model="m", max_tokens=50, messages=ask(text)) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == "The quick brown fox jumps"
    assert upstream_calls(upstream, text) == 1


def test_a_key_can_opt_out(gateway_factory: Factory, upstream: Upstream) -> None:
    master = "sk-master-optout"
    gw = gateway_factory(upstream_args(upstream), config={"cache": {"enabled": True},
                                                          "auth": {"master_key": master}})
    admin = {"authorization": f"Bearer {master}"}
    keys = []
    for metadata in ({"cache": False}, {}):
        r = httpx.post(f"{gw.url}/api/v1/keys", json={"alias": f"k-{uuid.uuid4().hex[:6]}", "metadata": metadata},
                       headers=admin)
        assert r.status_code in (200, 201), r.text
        keys.append(r.json()["key"])
    text = f"opt-out {uuid.uuid4()}"

    def status(key: str) -> str:
        raw = client(gw, key).chat.completions.with_raw_response.create(model="m", messages=ask(text))
        return raw.headers["x-cache"]

    assert [status(keys[0]), status(keys[0])] == ["BYPASS", "BYPASS"]
    assert [status(keys[1]), status(keys[1])] == ["MISS", "HIT"]
    assert status(keys[0]) == "BYPASS"


def test_a_hit_is_billed_at_zero_and_recorded_as_a_hit(gateway_factory: Factory, upstream: Upstream) -> None:
    master = "sk-master-ledger"
    gw = gateway_factory(upstream_args(upstream), config={"cache": {"enabled": True},
                                                          "auth": {"master_key": master}})
    text = f"bill {uuid.uuid4()}"
    c = client(gw, master)
    for expected in ("MISS", "HIT", "HIT"):
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask(text))
        assert raw.headers["x-cache"] == expected
    admin = {"authorization": f"Bearer {master}"}
    deadline = time.monotonic() + 10
    while True:  # the ledger is written in batches off the request path
        totals = httpx.get(f"{gw.url}/api/v1/usage", params={"model": "gpt-4o-mini"}, headers=admin).json()["totals"]
        if totals["total_requests"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (totals["total_requests"], totals["cache_hits"], totals["cache_misses"]) == (3, 2, 1)
    one_call = (11 * 0.15 + 5 * 0.60) / 1e6  # gpt-4o-mini, USD per 1M tokens: only the upstream call is billed
    assert totals["total_cost"] == pytest.approx(one_call, rel=0.3)
    assert totals["total_tokens"] == 48  # the hits' tokens are recorded (and count against token limits)
