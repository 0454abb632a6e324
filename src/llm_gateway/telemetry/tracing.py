"""OpenTelemetry traces: a SERVER span per request and a CLIENT child span per upstream attempt.

Imported by create_app only when tracing is on: a gateway without tracing loads neither the OpenTelemetry SDK
nor an exporter, and its requests do no tracing work.
Spans are built in settle from what the request recorded (times, attempts, usage), with explicit start and
end timestamps, and retries, fallbacks and hedges show up as sibling child spans in the order they were tried.
The request path only decides the trace (the client's `traceparent`, or a new sampled one) and draws each
attempt's span id, so that the upstream request carries a W3C `traceparent` naming the attempt's CLIENT span:
an upstream that traces (vLLM, another gateway) puts its spans under it. Attribute names follow the
OpenTelemetry GenAI semantic conventions; gateway facts are under `llm_gateway.*`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import time
from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from llm_gateway.pipeline.context import RequestContext
from llm_gateway.settings import TracingConfig
from llm_gateway.telemetry.attempts import Attempt
from llm_gateway.telemetry.fields import cache_result, cost_of, key_alias_of, team_of
from llm_gateway.telemetry.output import read_answer
from llm_gateway.telemetry.redact import Redactor, client_credentials

OPERATIONS = {"chat/completions": "chat", "completions": "text_completion", "embeddings": "embeddings"}
# gen_ai.system / gen_ai.provider.name well-known values for our provider types.
GENAI_SYSTEMS = {"openai": "openai", "openai-compatible": "openai", "azure": "azure.ai.openai",
                 "anthropic": "anthropic", "gemini": "gcp.gemini", "bedrock": "aws.bedrock"}
REQUEST_PARAMS = (("max_tokens", "gen_ai.request.max_tokens"), ("max_completion_tokens", "gen_ai.request.max_tokens"),
                  ("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p"),
                  ("frequency_penalty", "gen_ai.request.frequency_penalty"),
                  ("presence_penalty", "gen_ai.request.presence_penalty"), ("seed", "gen_ai.request.seed"))
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_TRACE = "trace"  # the request's _Trace in ctx.extensions
UNSET = Status(StatusCode.UNSET)
EXPORTERS = {"http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
             "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"}


def build_exporter(config: TracingConfig, env: Mapping[str, str]) -> SpanExporter | None:
    if config.exporter == "none" or env.get("OTEL_TRACES_EXPORTER", "").lower() == "none":
        return None
    if config.exporter == "console" or env.get("OTEL_TRACES_EXPORTER", "").lower() == "console":
        return ConsoleSpanExporter()
    protocol = (config.protocol or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if protocol not in EXPORTERS:
        raise ValueError(f"telemetry.tracing.protocol: unsupported OTLP protocol {protocol!r} "
                         "(use http/protobuf or grpc)")
    module = importlib.import_module(EXPORTERS[protocol])  # only the chosen transport is loaded
    kwargs: dict[str, Any] = {}
    if config.headers:
        kwargs["headers"] = dict(config.headers)
    endpoint = config.endpoint
    if endpoint and protocol == "http/protobuf":
        kwargs["endpoint"] = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else \
            endpoint.rstrip("/") + "/v1/traces"
    elif endpoint:
        kwargs["endpoint"] = endpoint
        kwargs["insecure"] = endpoint.startswith("http://")
    exporter: SpanExporter = module.OTLPSpanExporter(**kwargs)
    return exporter


def _put(attrs: dict[str, Any], name: str, value: Any) -> None:
    if value is not None and value != "":
        attrs[name] = value


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The W3C `traceparent` of the client, or None when absent or malformed (then a new trace starts)."""
    if not value or len(value) < 55:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3][:2], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0x01))


class _Trace:
    """One request's trace, decided before the upstream call: ids drawn then are the ones its spans get."""

    __slots__ = ("attempts", "parent", "root", "sampled", "trace_id", "tracestate")

    def __init__(self, trace_id: int, parent: SpanContext | None, sampled: bool, tracestate: str | None) -> None:
        self.trace_id = trace_id
        self.parent = parent
        self.sampled = sampled
        self.tracestate = tracestate
        self.root = SpanContext(trace_id, random.getrandbits(64) or 1, is_remote=False, trace_flags=SAMPLED)
        self.attempts: dict[float, int] = {}  # an attempt's start (its record's `started`) -> its span id


class Tracing:
    """The stage that decides each request's trace (admit), emits its spans (settle), and their processors.

    Spans are built as finished ReadableSpans and handed to the processors directly rather than through a
    Tracer: every value is already of a valid attribute type, and skipping the SDK's per-attribute validation
    and sampler objects halves the cost of a traced request. Sampling is the SDK default's rule,
    ParentBased(TraceIdRatioBased): follow the client's sampled flag, else keep `sample_ratio` of new traces.
    """

    def __init__(self, config: TracingConfig, redactor: Redactor, env: Mapping[str, str] | None = None,
                 exporter: SpanExporter | None = None) -> None:
        env = os.environ if env is None else env
        name = config.service_name or env.get("OTEL_SERVICE_NAME") or "llm-gateway"
        self.resource = Resource.create({"service.name": name})
        self.scope = InstrumentationScope("llm_gateway")
        self.processor = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
        exporter = exporter if exporter is not None else build_exporter(config, env)
        if exporter is not None:
            self.add_span_processor(BatchSpanProcessor(exporter))
        self.keep_below = int(config.sample_ratio * (1 << 64))
        self.capture_content = config.capture_content
        self.redactor = redactor

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self.processor.add_span_processor(processor)

    def force_flush(self) -> bool:
        return self.processor.force_flush()

    records = True  # settles by recording what happened: may run later (pipeline.stack)

    def admit(self, ctx: RequestContext) -> None:
        ctx.extensions[_TRACE] = self._decide(ctx)

    def _decide(self, ctx: RequestContext) -> _Trace:
        """The client's trace when it sent a `traceparent` (and its sampling decision), else a new one."""
        headers = ctx.request.headers
        parent = parse_traceparent(headers.get("traceparent"))
        if parent is not None:
            return _Trace(parent.trace_id, parent, parent.trace_flags.sampled, headers.get("tracestate"))
        trace_id = random.getrandbits(128) or 1
        return _Trace(trace_id, None, (trace_id & 0xFFFFFFFFFFFFFFFF) < self.keep_below, None)

    def trace_id_of(self, ctx: RequestContext) -> str:
        """The request's trace id (32 hex digits), for the ledger: the dashboard links a request to its trace."""
        trace = ctx.extensions.get(_TRACE)
        return f"{trace.trace_id:032x}" if trace is not None else ""

    def upstream_headers(self, ctx: RequestContext, started: float) -> list[tuple[str, str]]:
        """`traceparent` (and the client's `tracestate`) for the attempt that starts at `started`."""
        trace: _Trace | None = ctx.extensions.get(_TRACE)
        if trace is None:
            return []
        span_id = random.getrandbits(64) or 1
        trace.attempts[started] = span_id
        headers = [("traceparent", f"00-{trace.trace_id:032x}-{span_id:016x}-{'01' if trace.sampled else '00'}")]
        if trace.tracestate:
            headers.append(("tracestate", trace.tracestate))
        return headers

    def _span(self, name: str, trace_id: int, parent: SpanContext | None, kind: SpanKind, attrs: dict[str, Any],
              start: int, end: int, status: Status = UNSET, span_id: int = 0) -> SpanContext:
        context = SpanContext(trace_id, span_id or random.getrandbits(64) or 1, is_remote=False, trace_flags=SAMPLED)
        self.processor.on_end(ReadableSpan(name, context, parent, self.resource, attrs, kind=kind, status=status,
                                           start_time=start, end_time=end, instrumentation_scope=self.scope))
        return context

    def settle(self, ctx: RequestContext) -> None:
        trace: _Trace = ctx.extensions.get(_TRACE) or self._decide(ctx)  # none: refused before admission
        if not trace.sampled:
            return
        trace_id, parent, root = trace.trace_id, trace.parent, trace.root
        offset = time.time_ns() - time.perf_counter_ns()
        end = int((ctx.finished_at or time.perf_counter()) * 1e9) + offset
        op = OPERATIONS.get(ctx.endpoint)
        name = f"{op} {ctx.model}" if op else f"{ctx.request.method} {ctx.request.path}"
        answer = read_answer(ctx, texts=self.capture_content)
        status = Status(StatusCode.ERROR, ctx.error_type or None) if ctx.status >= 500 or not ctx.status else UNSET
        # Children are exported before their parent: the parent's span id was drawn first so they can name it.
        attempts: list[Attempt] = ctx.attempt_log or []
        for index, attempt in enumerate(attempts):
            answered = attempt.ok and index == len(attempts) - 1
            attrs = self._attempt_attrs(attempt, index, op)
            if answered:
                _put(attrs, "gen_ai.response.model", answer.model)
                if answer.finish_reasons:
                    attrs["gen_ai.response.finish_reasons"] = tuple(answer.finish_reasons)
                if ctx.first_byte_at:
                    attrs["llm_gateway.ttft_ms"] = round((ctx.first_byte_at - attempt.started) * 1000, 3)
            failed = UNSET if attempt.ok else Status(StatusCode.ERROR,
                                                     attempt.error_message[:200] or attempt.error_type)
            self._span(f"{op or 'http'} {attempt.model}", trace_id, root, SpanKind.CLIENT, attrs,
                       int(attempt.started * 1e9) + offset, end if answered else int(attempt.ended * 1e9) + offset,
                       failed, trace.attempts.get(attempt.started, 0))
        self.processor.on_end(ReadableSpan(
            name, root, parent, self.resource, self._request_attrs(ctx, op, answer), kind=SpanKind.SERVER,
            status=status, start_time=int(ctx.started * 1e9) + offset, end_time=end,
            instrumentation_scope=self.scope))

    def _request_attrs(self, ctx: RequestContext, op: str | None, answer: Any) -> dict[str, Any]:
        a: dict[str, Any] = {
            "http.request.method": ctx.request.method,
            "url.path": ctx.request.path,
            "http.response.status_code": ctx.status,
            "llm_gateway.request_id": ctx.request_id,
            "llm_gateway.stream": ctx.stream,
            "llm_gateway.attempts": ctx.attempts,
        }
        _put(a, "gen_ai.operation.name", op)
        _put(a, "gen_ai.request.model", ctx.model)
        deployment = ctx.deployment
        ptype = getattr(getattr(deployment, "provider", None), "type", "")
        system = GENAI_SYSTEMS.get(ptype, ptype)
        _put(a, "gen_ai.system", system)
        _put(a, "gen_ai.provider.name", system)
        _put(a, "llm_gateway.provider", ctx.provider)
        _put(a, "llm_gateway.upstream_model", ctx.upstream_model)
        _put(a, "gen_ai.response.model", answer.model or ctx.upstream_model)
        _put(a, "gen_ai.response.id", answer.response_id)
        if answer.finish_reasons:
            a["gen_ai.response.finish_reasons"] = tuple(answer.finish_reasons)
        body = ctx.body
        for field, attr in REQUEST_PARAMS:
            value = body.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                a[attr] = value
        usage = ctx.usage
        if usage is not None:
            a["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            a["gen_ai.usage.output_tokens"] = usage.completion_tokens
            a["llm_gateway.usage.estimated"] = usage.estimated
            if usage.cached_tokens:
                a["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
        _put(a, "llm_gateway.key_alias", key_alias_of(ctx))
        _put(a, "llm_gateway.user", ctx.user)
        _put(a, "llm_gateway.team", team_of(ctx))
        _put(a, "llm_gateway.cost_usd", cost_of(ctx))
        _put(a, "llm_gateway.cache_status", cache_result(ctx) or ctx.cache_status)
        _put(a, "error.type", ctx.error_type)
        verdicts = ctx.extensions.get("guardrails")  # guardrails.stage: what each guardrail decided, never text
        if verdicts:
            a["llm_gateway.guardrails"] = tuple(f"{v['guardrail']}:{v['stage']}:{v['action']}" for v in verdicts)
        if ctx.first_byte_at:
            a["llm_gateway.ttft_ms"] = round(ctx.ttft * 1000, 3)
        if ctx.disconnected:
            a["llm_gateway.client_disconnected"] = True
        if self.capture_content:
            self._content(ctx, a, answer)
        return a

    def _attempt_attrs(self, attempt: Attempt, index: int, op: str | None) -> dict[str, Any]:
        system = GENAI_SYSTEMS.get(attempt.provider_type, attempt.provider_type)
        a: dict[str, Any] = {"llm_gateway.attempt.index": index, "llm_gateway.attempt.kind": attempt.kind,
                             "llm_gateway.provider": attempt.provider}
        _put(a, "gen_ai.operation.name", op)
        _put(a, "gen_ai.system", system)
        _put(a, "gen_ai.provider.name", system)
        _put(a, "gen_ai.request.model", attempt.model)
        if attempt.status:
            a["http.response.status_code"] = attempt.status
        _put(a, "error.type", attempt.error_type)
        origin = getattr(getattr(attempt.deployment, "provider", None), "origin", None)
        if origin is not None:
            _put(a, "server.address", getattr(origin, "host", None))
            _put(a, "server.port", getattr(origin, "port", None))
        return a

    def _content(self, ctx: RequestContext, a: dict[str, Any], answer: Any) -> None:
        extra = client_credentials(ctx.request.headers)
        body = ctx.body
        prompt = body.get("messages") or body.get("prompt") or body.get("input")
        if prompt is not None:
            a["gen_ai.input.messages"] = self.redactor.scrub_json(prompt, extra)
        if answer.texts:
            text = self.redactor.scrub_text("".join(answer.texts), extra)
            a["gen_ai.output.messages"] = orjson.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": text}],
                  "finish_reason": answer.finish_reasons[0] if answer.finish_reasons else None}]).decode()

    async def close(self) -> None:
        # The batch processor exports from its own thread; flushing it must not block the event loop.
        await asyncio.to_thread(self.processor.shutdown)
