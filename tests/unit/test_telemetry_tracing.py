"""Tracing: the span tree and GenAI attributes built from a settled request (in-memory exporter)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llm_gateway.errors import UpstreamHTTPError
from llm_gateway.pipeline.context import RequestContext, Usage
from llm_gateway.providers.openai_compat.adapter import PassthroughDecoder
from llm_gateway.server.http import Request
from llm_gateway.settings import TracingConfig
from llm_gateway.telemetry.attempts import PRIMARY, RETRY, AttemptRecorder
from llm_gateway.telemetry.gateway_metrics import GatewayMetrics
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.telemetry.redact import Redactor
from llm_gateway.telemetry.setup import tracing_enabled
from llm_gateway.telemetry.tracing import Tracing, build_exporter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CLIENT_KEY = "vk-client-secret-123456"


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def streamed_ctx_with_retry() -> RequestContext:
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "authorization": f"Bearer {CLIENT_KEY}"}
    ctx = RequestContext(Request("POST", "/v1/chat/completions", "", headers, b"", "127.0.0.1"), "rid-7",
                         "chat/completions")
    ctx.body = {"model": "gpt-4o", "stream": True, "max_tokens": 50, "temperature": 0.3,
                "messages": [{"role": "user", "content": f"hello {CLIENT_KEY}"}]}
    ctx.model, ctx.stream, ctx.user, ctx.status = "gpt-4o", True, "alice", 200
    provider = SimpleNamespace(name="openai-main", type="openai", origin=SimpleNamespace(host="api.test", port=443))
    dep = SimpleNamespace(provider=provider, model="gpt-4o-2024-08-06")
    ctx.deployment, ctx.provider, ctx.upstream_model = dep, "openai-main", dep.model
    ctx.key = SimpleNamespace(alias="ci-key", team="platform")
    ctx.cache_status = "miss"
    ctx.extensions["cost"] = 0.0021
    hook = AttemptRecorder(GatewayMetrics(Registry())).on_attempt
    t = ctx.started
    hook(ctx, dep, t + 0.001, UpstreamHTTPError(503, "overloaded", b"", type="server_error"), PRIMARY)
    hook(ctx, dep, t + 0.010, None, RETRY)
    ctx.attempts = 2
    log = ctx.attempt_log or []
    log[0].ended, log[1].ended = t + 0.005, t + 0.02  # synthetic times, as if the hook ran then
    decoder = PassthroughDecoder(strip_usage_chunk=True)
    base = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06"}
    decoder.feed(sse({**base, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
                     {**base, "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}]},
                     {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}))
    ctx.output = decoder
    ctx.usage = decoder.usage or Usage()
    ctx.first_byte_at = t + 0.02
    ctx.finished_at = t + 0.03
    return ctx


def run(config: TracingConfig, ctx: RequestContext) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(config, Redactor(["sk-provider-key-abcdef"]), env={}, exporter=exporter)
    tracing.settle(ctx)
    tracing.force_flush()
    spans = list(exporter.get_finished_spans())
    tracing.processor.shutdown()
    return spans


def test_span_tree_and_attributes_for_a_streamed_request_with_one_retry() -> None:
    spans = run(TracingConfig(enabled=True, exporter="none"), streamed_ctx_with_retry())
    by_kind: dict[SpanKind, list[ReadableSpan]] = {SpanKind.SERVER: [], SpanKind.CLIENT: []}
    for span in spans:
        by_kind[span.kind].append(span)
    (root,) = by_kind[SpanKind.SERVER]
    first, retry = sorted(by_kind[SpanKind.CLIENT], key=lambda s: s.start_time)
    assert f"{root.context.trace_id:032x}" == TRACE_ID  # the client's traceparent is continued
    assert f"{root.parent.span_id:016x}" == PARENT_ID
    assert first.parent.span_id == root.context.span_id and retry.parent.span_id == root.context.span_id
    assert root.name == "chat gpt-4o" and first.name == retry.name == "chat gpt-4o-2024-08-06"
    a = root.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.system"] == "openai"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o" and a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.id"] == "chatcmpl-9"
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.usage.input_tokens"] == 9 and a["gen_ai.usage.output_tokens"] == 2
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["llm_gateway.key_alias"] == "ci-key" and a["llm_gateway.team"] == "platform"
    assert a["llm_gateway.user"] == "alice" and a["llm_gateway.cost_usd"] == 0.0021
    assert a["llm_gateway.cache_status"] == "miss" and a["llm_gateway.attempts"] == 2
    assert a["http.response.status_code"] == 200 and a["llm_gateway.request_id"] == "rid-7"
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # content is off by default
    assert first.attributes["llm_gateway.attempt.kind"] == "primary"
    assert first.attributes["error.type"] == "server_error" and first.attributes["http.response.status_code"] == 503
    assert first.status.status_code == StatusCode.ERROR
    assert retry.attributes["llm_gateway.attempt.kind"] == "retry" and "error.type" not in retry.attributes
    assert retry.attributes["gen_ai.provider.name"] == "openai" and retry.attributes["server.address"] == "api.test"
    assert tuple(retry.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    # times: the answering attempt lasts until the stream ended, inside the request span
    assert root.start_time < first.start_time < first.end_time <= retry.start_time
    assert retry.end_time == root.end_time
    assert abs((root.end_time - root.start_time) - 30_000_000) < 1_000


def test_content_only_when_enabled_and_redacted() -> None:
    spans = run(TracingConfig(enabled=True, exporter="none", capture_content=True), streamed_ctx_with_retry())
    root = next(s for s in spans if s.kind == SpanKind.SERVER)
    messages = orjson.loads(root.attributes["gen_ai.input.messages"])
    assert messages == [{"role": "user", "content": "hello [REDACTED]"}]
    output = orjson.loads(root.attributes["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == "Hi there" and output[0]["finish_reason"] == "stop"
    for span in spans:
        for value in (span.attributes or {}).values():
            assert CLIENT_KEY not in str(value)


def test_switches_and_exporters() -> None:
    off = TracingConfig()
    assert not tracing_enabled(off, {})
    assert tracing_enabled(off, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing_enabled(TracingConfig(enabled=True), {"OTEL_SDK_DISABLED": "true"})
    assert build_exporter(TracingConfig(exporter="none"), {}) is None
    http = build_exporter(TracingConfig(endpoint="http://127.0.0.1:4318"), {})
    assert type(http).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    assert http._endpoint == "http://127.0.0.1:4318/v1/traces"  # type: ignore[union-attr]
    grpc = build_exporter(TracingConfig(), {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert type(grpc).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    for exporter in (http, grpc):
        exporter.shutdown()  # type: ignore[union-attr]


def test_sampling_follows_the_parent_and_the_ratio() -> None:
    unsampled = streamed_ctx_with_retry()
    unsampled.request.headers["traceparent"] = f"00-{TRACE_ID}-{PARENT_ID}-00"
    assert run(TracingConfig(enabled=True, exporter="none"), unsampled) == []
    malformed = streamed_ctx_with_retry()
    malformed.request.headers["traceparent"] = "00-nothex-00f067aa0ba902b7-01" + "0" * 30
    spans = run(TracingConfig(enabled=True, exporter="none"), malformed)
    assert len(spans) == 3 and len({s.context.trace_id for s in spans if s.context}) == 1
    root = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert root.parent is None and root.context is not None and f"{root.context.trace_id:032x}" != TRACE_ID
    no_parent = streamed_ctx_with_retry()
    del no_parent.request.headers["traceparent"]
    assert run(TracingConfig(enabled=True, exporter="none", sample_ratio=0.0), no_parent) == []
    assert len(run(TracingConfig(enabled=True, exporter="none", sample_ratio=1.0), no_parent)) == 3


def test_the_ledger_gets_the_trace_id_of_the_request_span() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingConfig(enabled=True, exporter="none"), Redactor([]), env={}, exporter=exporter)
    ctx = streamed_ctx_with_retry()
    assert tracing.trace_id_of(ctx) == ""  # not decided yet
    tracing.admit(ctx)
    trace_id = tracing.trace_id_of(ctx)
    tracing.settle(ctx)
    tracing.force_flush()
    root = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    tracing.processor.shutdown()
    assert root.context is not None and trace_id == f"{root.context.trace_id:032x}"
