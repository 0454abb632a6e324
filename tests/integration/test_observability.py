"""Observability against real gateway processes: OTLP/HTTP and OTLP/gRPC receivers on loopback, the access
log on stdout, the llm_gateway_* series, and no secret in any log line or span attribute."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tests.conftest import GatewayProcess, metric_value
from tests.upstream import Upstream, free_port

MASTER = "mk-observe-master-5c1d8e2f"
PROVIDER_KEY = "sk-observe-provider-9a7b6c5d"
MESSAGES = [{"role": "user", "content": "Say hello"}]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def value_of(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Received:
    """Spans an OTLP receiver got, as plain dicts."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for rs in request.resource_spans:
                resource = {a.key: value_of(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append({
                            "name": s.name, "kind": s.kind, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(), "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano, "status": s.status.code, "resource": resource,
                            "attrs": {a.key: value_of(a.value) for a in s.attributes}})

    def wait_for(self, trace_id: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if s["trace_id"] == trace_id]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} spans of trace {trace_id}, got {found}")


@pytest.fixture
def otlp_http() -> Iterator[tuple[str, Received]]:
    """A real OTLP/HTTP (protobuf) receiver on loopback."""
    received = Received()
    port = free_port()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        msg = trace_service_pb2.ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        received.take(msg)
        return web.Response(body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)

    def run() -> None:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}", received
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def otlp_grpc() -> Iterator[tuple[str, Received]]:
    received = Received()

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.take(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(0)


def config(upstream: Upstream, tmp_path: Path, tracing: dict[str, Any], **telemetry: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                       "api_key": PROVIDER_KEY, "models": ["*"]}],
        "routing": {"retries": {"max_retries": 1, "backoff_s": 0.0}},
        "database": {"url": f"sqlite:///{tmp_path}/gateway.db"},
        "telemetry": {"tracing": {"enabled": True, **tracing}, **telemetry},
    }


FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50", "LLM_GATEWAY_MASTER_KEY": MASTER}


def access_lines(gw: GatewayProcess) -> list[dict[str, Any]]:
    out = []
    for line in gw.log().splitlines():
        if line.startswith("{") and '"event":"request"' in line:
            out.append(orjson.loads(line))
    return out


def test_streamed_request_with_one_retry_over_otlp_http(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path,
        otlp_http: tuple[str, Received]) -> None:
    endpoint, received = otlp_http
    gw = gateway_factory(config=config(upstream, tmp_path, {"endpoint": endpoint, "service_name": "gw-test"}),
                         env=FAST_EXPORT)
    model = f"flaky-1-{uuid.uuid4().hex[:8]}"  # 503 once, then answers
    client = openai.OpenAI(base_url=gw.v1, api_key=MASTER, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=True, user="carol",  # type: ignore[arg-type]
        extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "obs-req-1"})
    assert raw.headers["x-request-id"] == "obs-req-1"  # accepted and returned
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "The quick brown fox jumps"
    assert [r.body["model"] for r in upstream.requests if r.body and r.body.get("model") == model] == [model] * 2

    spans = received.wait_for(TRACE_ID, 3)
    (root,) = [s for s in spans if s["parent"] == PARENT_ID]
    children = sorted((s for s in spans if s["parent"] == root["span_id"]), key=lambda s: s["start"])
    assert len(spans) == 3 and len(children) == 2
    assert root["resource"]["service.name"] == "gw-test"
    assert root["name"] == f"chat {model}" and root["kind"] == 2  # SERVER
    a = root["attrs"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == model and a["gen_ai.response.model"] == model
    assert a["gen_ai.usage.input_tokens"] == 11 and a["gen_ai.usage.output_tokens"] == 5
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["llm_gateway.request_id"] == "obs-req-1" and a["llm_gateway.user"] == "carol"
    assert a["llm_gateway.key_alias"] == "master" and a["llm_gateway.attempts"] == 2
    assert a["llm_gateway.stream"] is True and a["http.response.status_code"] == 200
    failed, retried = children
    assert [c["kind"] for c in children] == [3, 3]  # CLIENT
    assert failed["attrs"]["llm_gateway.attempt.kind"] == "primary"
    assert failed["attrs"]["http.response.status_code"] == 503 and failed["attrs"]["error.type"] == "server_error"
    assert failed["status"] == 2  # ERROR
    assert retried["attrs"]["llm_gateway.attempt.kind"] == "retry" and "error.type" not in retried["attrs"]
    assert retried["attrs"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert retried["attrs"]["server.address"] == "127.0.0.1"
    assert root["start"] <= failed["start"] < failed["end"] <= retried["start"] < retried["end"] <= root["end"]

    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_retries_total", {"provider": "up"}) == 1
    assert metric_value(metrics, "llm_gateway_provider_requests_total", {"provider": "up"}) == 2
    assert metric_value(metrics, "llm_gateway_provider_errors_total", {"provider": "up", "type": "server_error"}) == 1
    assert metric_value(metrics, "llm_gateway_upstream_ttft_seconds_count", {"provider": "up"}) == 1
    assert metric_value(metrics, "llm_gateway_tokens_total", {"type": "completion", "model": model}) == 5
    assert metric_value(metrics, "llm_gateway_in_flight_requests") == 0
    gw.stop()
    (line,) = [ln for ln in access_lines(gw) if ln["request_id"] == "obs-req-1"]
    assert line["status"] == 200 and line["attempts"] == 2 and line["provider"] == "up"
    assert line["key_alias"] == "master" and line["prompt_tokens"] == 11 and line["completion_tokens"] == 5
    assert line["ttft_ms"] > 0 and line["latency_ms"] >= line["ttft_ms"] and line["stream"] is True


def test_otlp_grpc_export(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path,
                          otlp_grpc: tuple[str, Received]) -> None:
    endpoint, received = otlp_grpc
    gw = gateway_factory(config=config(upstream, tmp_path, {"endpoint": endpoint, "protocol": "grpc"}),
                         env=FAST_EXPORT)
    r = httpx.post(f"{gw.v1}/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES},
                   headers={"authorization": f"Bearer {MASTER}",
                            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert r.status_code == 200
    spans = received.wait_for(TRACE_ID, 2)
    (root,) = [s for s in spans if s["parent"] == PARENT_ID]
    assert root["attrs"]["gen_ai.usage.output_tokens"] == 5
    assert root["attrs"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert root["resource"]["service.name"] == "llm-gateway"


def test_no_secret_in_logs_spans_or_metrics_with_bodies_on(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path,
        otlp_http: tuple[str, Received]) -> None:
    endpoint, received = otlp_http
    cfg = config(upstream, tmp_path, {"endpoint": endpoint, "capture_content": True}, log_bodies=True)
    gw = gateway_factory(["--log-level", "debug"], config=cfg, env=FAST_EXPORT)
    created = httpx.post(f"{gw.url}/api/v1/keys", json={"alias": "obs-svc"},
                         headers={"authorization": f"Bearer {MASTER}"})
    assert created.status_code == 201, created.text
    virtual = created.json()["key"]
    body_secret = "sk-body-field-0123456789"
    leaky = f"my keys are {virtual}, {MASTER} and {PROVIDER_KEY}"
    trace_ids = []
    for i, (model, stream, key) in enumerate([("gpt-4o-mini", False, virtual), ("gpt-4o-mini", True, virtual),
                                             ("error-500", False, MASTER), ("gpt-4o-mini", False, "sk-wrong-key")]):
        trace_id = uuid.uuid4().hex
        trace_ids.append(trace_id)
        r = httpx.post(f"{gw.v1}/chat/completions", headers={
            "authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-{PARENT_ID}-01",
            "x-request-id": f"secret-test-{i}"}, json={
            "model": model, "stream": stream, "api_key": body_secret,
            "messages": [{"role": "user", "content": leaky}]}, timeout=30)
        assert r.status_code == (200, 200, 500, 401)[i], r.text
    assert upstream.requests[-1].headers["Authorization"] == f"Bearer {PROVIDER_KEY}"  # the key was in play
    spans = [s for t in trace_ids[:3] for s in received.wait_for(t, 2)]
    metrics = httpx.get(f"{gw.url}/metrics").text
    gw.stop()
    log = gw.log()
    lines = access_lines(gw)
    assert {ln["request_id"] for ln in lines} >= {f"secret-test-{i}" for i in range(4)}
    logged = next(ln for ln in lines if ln["request_id"] == "secret-test-0")
    assert logged["key_alias"] == "obs-svc" and logged["request_body"]["api_key"] == "[REDACTED]"
    assert "[REDACTED]" in logged["request_body"]["messages"][0]["content"]
    assert logged["response_body"] == "The quick brown fox jumps"
    root = next(s for s in spans if s["trace_id"] == trace_ids[0] and s["parent"] == PARENT_ID)
    assert "[REDACTED]" in root["attrs"]["gen_ai.input.messages"]
    assert "The quick brown fox jumps" in root["attrs"]["gen_ai.output.messages"]
    span_text = orjson.dumps([s["attrs"] for s in spans]).decode()
    for secret in (virtual, MASTER, PROVIDER_KEY, body_secret, "sk-wrong-key"):
        assert secret not in log, f"secret {secret[:8]}... in the log"
        assert secret not in span_text, f"secret {secret[:8]}... in a span"
        assert secret not in metrics


def test_tracing_off_loads_no_tracing_sdk(tmp_path: Path) -> None:
    # Tracing off must load no OpenTelemetry SDK or exporter, nor our tracing module, nor redis-py: their import
    # time, memory and per-request work. The OpenTelemetry API itself comes with FastAPI (the cold paths import it:
    # 13 ms and 0.75 MiB measured), and FastAPI's own telemetry is turned off (api/cold.py).
    code = ("import sys\nfrom llm_gateway.app import create_app\nfrom llm_gateway.settings import parse_config\n"
            f"create_app(parse_config({{'database': {{'url': 'sqlite:///{tmp_path}/g.db'}}}}, env={{}}))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter', "
            "'redis', 'llm_gateway.telemetry.tracing'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
