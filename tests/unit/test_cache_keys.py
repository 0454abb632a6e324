"""Cache keys and the per-request decision (controls, bounds, opt-outs)."""

from __future__ import annotations

from typing import Any

from llm_gateway.cache.keys import decide, exact_key, partition_key, request_options, resolved_model, scope_of
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from llm_gateway.routing.options import parse_options
from llm_gateway.server.http import Request
from llm_gateway.settings import CacheConfig

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}


def ctx_for(body: dict[str, Any], headers: dict[str, str] | None = None, endpoint: str = CHAT,
            stream: bool = False, key: Any = None) -> RequestContext:
    ctx = RequestContext(Request("POST", "/v1/chat/completions", "", headers or {}, b"", ""), "r", endpoint)
    ctx.body = dict(body)
    ctx.options = parse_options(ctx.request.headers, ctx.body)
    ctx.stream = stream
    ctx.key = key
    return ctx


def test_key_ignores_delivery_and_identity_but_not_answer_parameters() -> None:
    base = exact_key(CHAT, "p/m", "", BODY)
    same = {**BODY, "user": "x", "stream": True, "stream_options": {"include_usage": True}}
    assert exact_key(CHAT, "p/m", "", same) == base
    assert exact_key(CHAT, "p/m", "", dict(reversed(list(BODY.items())))) == base  # key order
    assert exact_key(CHAT, "p/m", "", {**BODY, "temperature": 0.3}) != base
    assert exact_key(CHAT, "p/m", "", {**BODY, "tools": [{"type": "function"}]}) != base
    assert exact_key(CHAT, "p/other", "", BODY) != base
    assert exact_key(CHAT, "p/m", "key:1", BODY) != base
    assert exact_key(COMPLETIONS, "p/m", "", BODY) != base
    assert len(base) == 32


def test_partition_ignores_only_the_conversation() -> None:
    other_words = {**BODY, "messages": [{"role": "user", "content": "hello there"}]}
    assert partition_key(CHAT, "m", "", BODY) == partition_key(CHAT, "m", "", other_words)
    assert partition_key(CHAT, "m", "", BODY) != partition_key(CHAT, "m", "", {**BODY, "temperature": 1})


class _Dep:
    def __init__(self, provider: str, model: str) -> None:
        self.provider = type("P", (), {"name": provider})()
        self.model = model


class _Route:
    def __init__(self, name: str, deps: list[_Dep], partial: bool = False) -> None:
        self.name = name
        self.deployments = deps
        self.partial = partial


def test_model_after_alias_resolution() -> None:
    assert resolved_model(_Route("fast", [_Dep("openai", "gpt-4o-mini")]), "fast") == "openai/gpt-4o-mini"  # type: ignore[arg-type]
    assert resolved_model(_Route("pool", [_Dep("a", "x"), _Dep("b", "y")]), "pool") == "pool"  # type: ignore[arg-type]
    assert resolved_model(None, "m") == "m"
    # the part of a pool a key may use has its own answers: never one a deployment it may not use gave
    assert resolved_model(_Route("pool", [_Dep("b", "y"), _Dep("a", "x")], partial=True), "pool") == \
        "pool[a/x,b/y]"  # type: ignore[arg-type]


def test_controls() -> None:
    config = CacheConfig(enabled=True, max_temperature=1.0, ttl_s=60, max_ttl_s=600)
    d = decide(ctx_for(BODY), config, 60)
    assert (d.lookup, d.store, d.ttl) == (True, True, 60)
    d = decide(ctx_for({**BODY, "x-gateway": {"cache": False}}), config, 60)
    assert (d.lookup, d.store, d.reason) == (False, False, "request")
    d = decide(ctx_for(BODY, {"x-gateway-cache": "false"}), config, 60)
    assert (d.lookup, d.store) == (False, False)
    d = decide(ctx_for({**BODY, "x-gateway": {"cache_ttl": 5000}}), config, 60)
    assert (d.lookup, d.ttl) == (True, 600)  # bounded by max_ttl_s
    assert decide(ctx_for(BODY, {"cache-control": "no-cache"}), config, 60).store is True
    assert decide(ctx_for(BODY, {"cache-control": "no-cache"}), config, 60).lookup is False
    assert decide(ctx_for(BODY, {"cache-control": "no-store, max-age=0"}), config, 60).store is False
    assert decide(ctx_for({**BODY, "temperature": 1.2}), config, 60).reason == "temperature"
    assert decide(ctx_for({**BODY, "n": 3}), config, 60).lookup is False
    assert decide(ctx_for(BODY, endpoint=COMPLETIONS, stream=True), config, 60).lookup is False
    assert decide(ctx_for(BODY, endpoint=EMBEDDINGS), config, 60).lookup is True
    assert decide(ctx_for(BODY, endpoint="files"), config, 60).lookup is False
    opted_out = type("K", (), {"id": "k1", "metadata": {"cache": False}})()
    assert decide(ctx_for(BODY, key=opted_out), config, 60).reason == "key"


def test_scope_and_options() -> None:
    key = type("K", (), {"id": "k1", "team_id": "t1"})()
    ctx = ctx_for(BODY, key=key)
    assert scope_of("global", ctx) == ""
    assert scope_of("key", ctx) == "key:k1"
    assert scope_of("team", ctx) == "team:t1"
    assert request_options(ctx_for({**BODY, "x-gateway": {"cache": {"ttl": 5}}})) == {"cache": {"ttl": 5}}
