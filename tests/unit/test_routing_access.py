"""routing.access: which deployments a key's model list reaches, the allowed part of a route, permissions."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.errors import BadRequest, Forbidden
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.registry import build_provider
from llm_gateway.routing.access import Policy
from llm_gateway.routing.catalog import Catalog
from llm_gateway.routing.options import parse_options
from llm_gateway.server.http import Request
from llm_gateway.settings import parse_config


def catalog() -> Catalog:
    config = parse_config({
        "providers": [{"name": "a", "type": "openai-compatible", "base_url": "http://a/v1", "models": ["*"]},
                      {"name": "b", "type": "openai-compatible", "base_url": "http://b/v1", "models": ["x"]}],
        "models": {"cheap": {"deployments": [{"provider": "a", "model": "mini"}]},
                   "pool": {"deployments": [{"provider": "a", "model": "big"}, {"provider": "a", "model": "mini"}]},
                   "other": {"deployments": [{"provider": "b", "model": "x"}], "fallbacks": ["cheap"]}},
        "routing": {"fallbackChain": ["a", "b"]}})
    return Catalog({p.name: build_provider(p) for p in config.providers}, config.models, config.routing)


def ctx_for(cat: Catalog, model: str, endpoint: str = "chat/completions", headers: dict[str, str] | None = None,
            body: dict[str, Any] | None = None) -> RequestContext:
    ctx = RequestContext(Request("POST", "/v1/x", "", headers or {}, b"{}", None), "r", endpoint)
    ctx.model = model
    ctx.options = parse_options(headers or {}, dict(body or {}))
    ctx.route = cat.resolve(model) if endpoint == "chat/completions" else cat.passthrough_route(model)
    return ctx


def test_a_model_list_reaches_deployments_not_names() -> None:
    cat = catalog()
    access = Policy(cat).for_key(frozenset({"cheap"}), None, None, None)
    for model in ("cheap", "mini", "a/mini"):
        ctx = ctx_for(cat, model)
        access.admit(ctx)
        assert [d.model for d in ctx.route.deployments] == ["mini"]
    for model in ("big", "a/big", "other", "b/x", "x"):
        with pytest.raises(Forbidden) as err:
            access.admit(ctx_for(cat, model))
        assert err.value.code == "model_not_allowed" and repr(model) in err.value.message
    ctx = ctx_for(cat, "pool")
    access.admit(ctx)
    assert ctx.route.partial and [d.model for d in ctx.route.deployments] == ["mini"]
    assert access.route(cat.resolve("pool")) is ctx.route  # memoised: computed once per route


def test_the_fallback_chain_is_the_same_model_elsewhere() -> None:
    cat = catalog()
    access = Policy(cat).for_key(frozenset({"x"}), None, None, None)
    ctx = ctx_for(cat, "x")
    access.admit(ctx)
    assert [(d.provider.name, d.model) for d in ctx.route.deployments] == [("b", "x")]
    assert access.allows(cat.resolve("a/x").deployments[0])  # type: ignore[union-attr]
    assert not access.allows(cat.resolve("mini").deployments[0])  # type: ignore[union-attr]


def test_overrides_need_the_permission_in_every_form() -> None:
    cat = catalog()
    policy = Policy(cat)
    denied = policy.for_key(None, None, None, None)
    for headers, body in (({"x-gateway-provider": "b"}, {}), ({"x-gateway": '{"hedge": false}'}, {}),
                          ({}, {"x-gateway": {"retries": 1}}), ({"x-gateway-fallbacks": ""}, {})):
        with pytest.raises(BadRequest) as err:
            denied.admit(ctx_for(cat, "cheap", headers=headers, body=body))
        assert err.value.code == "override_not_allowed"
    denied.admit(ctx_for(cat, "cheap", headers={"x-gateway": '{"cache": false, "timeout": 3}'}))
    policy.teams["t"] = (True, False)
    policy.for_key(None, "t", None, None).admit(ctx_for(cat, "cheap", headers={"x-gateway-retries": "2"}))
    with pytest.raises(BadRequest):  # the key's own `false` wins over its team's `true`
        policy.for_key(None, "t", False, None).admit(ctx_for(cat, "cheap", headers={"x-gateway-retries": "2"}))


def test_pass_through_needs_its_permission_and_a_model_it_names_is_checked() -> None:
    cat = catalog()
    policy = Policy(cat)
    with pytest.raises(Forbidden) as err:
        policy.for_key(None, None, None, None).admit(ctx_for(cat, "", endpoint="files"))
    assert err.value.code == "passthrough_not_allowed"
    access = policy.for_key(frozenset({"cheap"}), None, None, True)
    access.admit(ctx_for(cat, "", endpoint="files"))
    with pytest.raises(Forbidden):
        access.admit(ctx_for(cat, "big", endpoint="responses"))
