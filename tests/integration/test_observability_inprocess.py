"""Traces through the real server, pipeline and dispatcher in this process, read with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.upstream import Upstream, free_port

from llm_gateway.app import create_app
from llm_gateway.runner import embedded, server_options
from llm_gateway.settings import parse_config

TRACE_ID = "5b8efff798038103d269b633813fc60c"
PARENT_ID = "eee19b7ec3c1b174"


@asynccontextmanager
async def traced_gateway(upstream: Upstream, tmp_path: Path,
                         **extra: Any) -> AsyncIterator[tuple[openai.AsyncOpenAI, InMemorySpanExporter]]:
    """A gateway with tracing on, served in this process; its spans end up in the memory exporter."""
    config = parse_config({
        "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                       "models": ["*"]}],
        "database": {"url": f"sqlite:///{tmp_path}/g.db"},
        "telemetry": {"access_log": False, "tracing": {"enabled": True, "exporter": "none"}},
        **extra,
    }, env={})
    gateway = create_app(config)
    assert gateway.telemetry is not None and gateway.telemetry.tracing is not None
    memory = InMemorySpanExporter()
    gateway.telemetry.tracing.add_span_processor(SimpleSpanProcessor(memory))
    await gateway.edge.startup()
    port = free_port()
    server = embedded(gateway.asgi, "127.0.0.1", port, server_options(config.server))
    serving = asyncio.get_running_loop().create_task(server.serve())
    await asyncio.sleep(0.05)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    try:
        yield client, memory
    finally:
        await client.close()
        server.stop()
        await gateway.edge.shutdown()  # the spans of every request are exported by now
        await asyncio.wait([serving], timeout=5)


async def test_streamed_request_with_one_retry_in_memory(upstream: Upstream, tmp_path: Path) -> None:
    model = f"flaky-1-{uuid.uuid4().hex[:8]}"
    retries = {"retries": {"max_retries": 2, "backoff_s": 0.0}}
    async with traced_gateway(upstream, tmp_path, routing=retries) as (client, memory):
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "The quick brown fox jumps"
    spans = [s for s in memory.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]
    (root,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT_ID
    attempts = sorted((s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
                      key=lambda s: s.start_time or 0)
    assert [s.attributes["llm_gateway.attempt.kind"] for s in attempts] == ["primary", "retry"]
    # each upstream request named its attempt's CLIENT span in the client's trace (W3C traceparent)
    sent = [r.headers.get("traceparent") for r in upstream.requests if isinstance(r.body, dict)
            and r.body.get("model") == model]
    assert sent == [f"00-{TRACE_ID}-{s.context.span_id:016x}-01" for s in attempts]
    assert [s.attributes["http.response.status_code"] for s in attempts] == [503, 200]
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[1].attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert root.attributes is not None
    assert root.attributes["gen_ai.usage.input_tokens"] == 11 and root.attributes["gen_ai.usage.output_tokens"] == 5
    assert root.attributes["gen_ai.request.model"] == model and root.attributes["llm_gateway.attempts"] == 2
    assert root.attributes["llm_gateway.provider"] == "up"


async def test_a_new_trace_reaches_the_upstream_and_an_unsampled_one_is_passed_on(upstream: Upstream,
                                                                                  tmp_path: Path) -> None:
    models = [f"m-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    async with traced_gateway(upstream, tmp_path) as (client, memory):
        await client.chat.completions.create(model=models[0], messages=[{"role": "user", "content": "hi"}])
        await client.chat.completions.create(
            model=models[1], messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00", "tracestate": "vendor=abc"})
    sent = {r.body["model"]: r.headers for r in upstream.requests if isinstance(r.body, dict)
            and r.body.get("model") in models}
    spans = memory.get_finished_spans()
    (attempt,) = [s for s in spans if s.kind == SpanKind.CLIENT and s.attributes
                  and s.attributes["gen_ai.request.model"] == models[0]]
    assert sent[models[0]]["traceparent"] == f"00-{attempt.context.trace_id:032x}-{attempt.context.span_id:016x}-01"
    # the client's trace is not sampled: nothing is exported, and the upstream learns it is not sampled either
    assert not [s for s in spans if f"{s.context.trace_id:032x}" == TRACE_ID]
    passed_on = sent[models[1]]["traceparent"]
    assert passed_on.startswith(f"00-{TRACE_ID}-") and passed_on.endswith("-00")
    assert sent[models[1]]["tracestate"] == "vendor=abc"
