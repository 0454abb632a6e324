"""GatewayMetrics, the attempt hook and the context readers: series, labels and bounded cardinality."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from tests.conftest import metric_value

from llm_gateway.errors import UpstreamHTTPError, UpstreamTimeout
from llm_gateway.pipeline.context import RequestContext, Usage
from llm_gateway.server.http import Request
from llm_gateway.telemetry.attempts import FALLBACK, HEDGE, PRIMARY, RETRY, AttemptRecorder, error_class
from llm_gateway.telemetry.fields import cache_result, cost_of, key_alias_of, team_of
from llm_gateway.telemetry.gateway_metrics import GatewayMetrics
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.telemetry.recorder import CoreMetrics, MetricsStage


def make_ctx(model: str = "gpt-4o", user: str = "alice") -> RequestContext:
    ctx = RequestContext(Request("POST", "/v1/chat/completions", "", {}, b"{}", "127.0.0.1"), "rid-1",
                         "chat/completions")
    ctx.model, ctx.user, ctx.provider, ctx.status = model, user, "openai", 200
    ctx.usage = Usage(10, 4)
    ctx.route = SimpleNamespace(deployments=[])  # the model is configured
    return ctx


def deployment(provider: str = "openai", model: str = "gpt-4o") -> SimpleNamespace:
    return SimpleNamespace(provider=SimpleNamespace(name=provider, type="openai"), model=model)


def setup(user_labels: bool = False) -> tuple[Registry, GatewayMetrics, MetricsStage]:
    registry = Registry()
    gm = GatewayMetrics(registry, user_labels=user_labels)
    return registry, gm, MetricsStage(CoreMetrics(registry), gm)


def test_tokens_cost_by_model_key_team_and_cache() -> None:
    registry, _, stage = setup()
    ctx = make_ctx()
    ctx.cost = 0.0125  # set by the cost stage
    ctx.key = SimpleNamespace(alias="ci-bot", id=7, team="search")
    ctx.cache_status = "miss"
    stage.settle(ctx)
    hit = make_ctx()
    hit.cache_status = "HIT"
    hit.extensions["cost"] = 0.5
    stage.settle(hit)
    text = registry.render().decode()
    assert metric_value(text, "llm_gateway_tokens_total", {"type": "prompt", "model": "gpt-4o"}) == 20
    assert metric_value(text, "llm_gateway_tokens_total", {"type": "completion", "model": "gpt-4o"}) == 8
    assert metric_value(text, "llm_gateway_cost_total") == 0.5125
    assert metric_value(text, "llm_gateway_model_cost_total", {"model": "gpt-4o"}) == 0.5125
    assert metric_value(text, "llm_gateway_key_cost_total", {"key": "ci-bot"}) == 0.0125
    assert metric_value(text, "llm_gateway_key_cost_total", {"key": "none"}) == 0.5
    assert metric_value(text, "llm_gateway_team_cost_total", {"team": "search"}) == 0.0125
    assert metric_value(text, "llm_gateway_key_requests_total", {"key": "ci-bot", "status": "200"}) == 1
    assert metric_value(text, "llm_gateway_cache_hits_total") == 1
    assert metric_value(text, "llm_gateway_cache_misses_total") == 1
    # genai-gateway's core counters are untouched, under their exact names
    assert metric_value(text, "tokens_by_user_by_model_total", {"user": "alice", "model": "gpt-4o"}) == 28
    assert metric_value(text, "prompt_tokens_total") == 20


def test_no_user_labels_unless_enabled() -> None:
    registry, _, stage = setup(user_labels=False)
    ctx = make_ctx(user="user-12345")
    ctx.extensions["cost"] = 1.0
    stage.settle(ctx)
    llm_lines = [ln for ln in registry.render().decode().splitlines()
                 if ln.startswith("llm_gateway_") and "user-12345" in ln]
    assert llm_lines == []
    registry, _, stage = setup(user_labels=True)
    stage.settle(ctx)
    text = registry.render().decode()
    assert metric_value(text, "llm_gateway_user_cost_total", {"user": "user-12345"}) == 1.0
    assert metric_value(text, "llm_gateway_user_tokens_total", {"user": "user-12345"}) == 14


def test_attempt_hook_counts_providers_errors_retries_fallbacks_hedges() -> None:
    registry, gm, stage = setup()
    hook = AttemptRecorder(gm).on_attempt
    ctx = make_ctx()
    t0 = 0.0
    hook(ctx, deployment("a"), t0, UpstreamHTTPError(503, "busy", b"", type="server_error"), PRIMARY)
    hook(ctx, deployment("a"), t0, UpstreamTimeout("slow"), RETRY)
    hook(ctx, deployment("b"), t0, asyncio.CancelledError(), HEDGE)
    hook(ctx, deployment("c"), t0, None, FALLBACK)
    assert [a.kind for a in ctx.attempt_log or []] == [PRIMARY, RETRY, HEDGE, FALLBACK]
    assert [a.error_type for a in ctx.attempt_log or []] == ["server_error", "timeout", "cancelled", ""]
    ctx.first_byte_at = ctx.started + 0.2
    ctx.attempt_log[-1].started = ctx.started + 0.05  # type: ignore[index]
    stage.settle(ctx)
    text = registry.render().decode()
    assert metric_value(text, "llm_gateway_provider_requests_total", {"provider": "a"}) == 2
    assert metric_value(text, "llm_gateway_provider_errors_total", {"provider": "a", "type": "server_error"}) == 1
    assert metric_value(text, "llm_gateway_provider_errors_total", {"provider": "a", "type": "timeout"}) == 1
    assert metric_value(text, "llm_gateway_retries_total", {"provider": "a"}) == 1
    assert metric_value(text, "llm_gateway_hedges_total", {"provider": "b"}) == 1
    assert metric_value(text, "llm_gateway_fallbacks_total", {"provider": "c"}) == 1
    assert metric_value(text, "llm_gateway_upstream_latency_seconds_count", {"provider": "a"}) == 2
    assert metric_value(text, "llm_gateway_upstream_ttft_seconds_count", {"provider": "c"}) == 1
    assert metric_value(text, "llm_gateway_upstream_ttft_seconds_bucket", {"provider": "c", "le": "0.1"}) == 0
    assert metric_value(text, "llm_gateway_upstream_ttft_seconds_bucket", {"provider": "c", "le": "0.25"}) == 1


def test_limits_ledger_and_in_flight_gauges() -> None:
    registry, gm, stage = setup()
    gm.limit_rejected("key")
    ctx = make_ctx()
    ctx.status = 429
    ctx.extensions["limit_scope"] = "team"
    stage.settle(ctx)
    backlog = [3]
    gm.watch_ledger_backlog(lambda: backlog[0])
    core = stage.m
    core.in_flight.read_from(lambda: 2)
    text = registry.render().decode()
    assert metric_value(text, "llm_gateway_limit_rejections_total", {"scope": "key"}) == 1
    assert metric_value(text, "llm_gateway_limit_rejections_total", {"scope": "team"}) == 1
    assert metric_value(text, "llm_gateway_ledger_backlog") == 3
    assert metric_value(text, "llm_gateway_in_flight_requests") == 2
    backlog[0] = 0
    assert metric_value(registry.render().decode(), "llm_gateway_ledger_backlog") == 0


def test_field_readers_never_return_a_bare_key() -> None:
    ctx = make_ctx()
    ctx.key = "sk-live-secret-value"
    assert key_alias_of(ctx) == ""
    assert team_of(ctx) == ""
    ctx.key = {"id": 42, "hashed": "abc"}
    assert key_alias_of(ctx) == "id:42"
    ctx.key = SimpleNamespace(name="prod", team_id=9)
    assert key_alias_of(ctx) == "prod" and team_of(ctx) == "9"
    assert not cost_of(ctx)
    ctx.extensions["cost"] = SimpleNamespace(total=0.25)
    assert cost_of(ctx) == 0.25
    for status, want in (("", ""), ("semantic_hit", "hit"), ("MISS", "miss"), ("bypass", "")):
        ctx.cache_status = status
        assert cache_result(ctx) == want


def test_error_class_is_bounded() -> None:
    assert error_class(UpstreamHTTPError(429, "slow down", b"")) == (429, "rate_limit")
    assert error_class(UpstreamHTTPError(401, "no", b"")) == (401, "auth")
    assert error_class(UpstreamHTTPError(404, "no", b"")) == (404, "client_error")
    assert error_class(ConnectionResetError()) == (502, "connection")
    assert error_class(RuntimeError("x")) == (0, "other")


def test_label_sets_beyond_the_cap_are_folded_into_one_other_series() -> None:
    registry = Registry(max_series=3)
    counter = registry.counter("c_total", "c", ["model", "user"])
    histogram = registry.histogram("h_seconds", "h", ["model"], (1.0,))
    gauge = registry.gauge("g", "g", ["model"])
    for i in range(10):
        counter.inc((f"m{i}", "u"), 2)
        histogram.observe(0.5, (f"m{i}",))
        gauge.add(1, (f"m{i}",))
    counter.inc(("m1", "u"))  # a label set kept before the cap still counts on its own
    assert counter.values == {("m0", "u"): 2, ("m1", "u"): 3, ("m2", "u"): 2, ("other", "other"): 14}
    assert set(histogram.series) == {("m0",), ("m1",), ("m2",), ("other",)}
    assert histogram.count(("other",)) == 7 and sum(histogram.count(k) for k in histogram.series) == 10
    assert gauge.values[("other",)] == 7
    text = registry.render().decode()
    assert metric_value(text, "c_total", {"model": "other", "user": "other"}) == 14
    assert metric_value(text, "h_seconds_count", {"model": "other"}) == 7


def test_unauthenticated_and_unconfigured_models_are_counted_as_unknown() -> None:
    registry = Registry()
    core = CoreMetrics(registry)
    stage = MetricsStage(core, GatewayMetrics(registry))
    refused = make_ctx(model="random-1")
    refused.status = 401  # no valid key: the name it sent is not a label value
    unconfigured = make_ctx(model="random-2")
    unconfigured.route, unconfigured.status = None, 404
    for ctx in (refused, unconfigured, make_ctx()):
        stage.settle(ctx)
    assert set(core.requests.values) == {("unknown", "openai", "401"), ("unknown", "openai", "404"),
                                         ("gpt-4o", "openai", "200")}
