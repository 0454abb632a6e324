"""The access log: fields of a line, console format, buffering, and redaction of bodies."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from llm_gateway.cli import build_config, build_parser, resolve
from llm_gateway.pipeline.context import RequestContext, Usage
from llm_gateway.server.http import Request
from llm_gateway.settings import ConfigError, TelemetryConfig, parse_config
from llm_gateway.telemetry.access_log import AccessLogStage, LineWriter
from llm_gateway.telemetry.logs import JsonFormatter, setup_logging
from llm_gateway.telemetry.redact import REDACTED, Redactor, client_credentials

PROVIDER_KEY = "sk-provider-Zx81kQ0pLm"
CLIENT_KEY = "vk-client-77aa01bbd2"
MASTER_KEY = "master-Q9w8e7r6t5"


def make_ctx(body: dict[str, object] | None = None, output: bytes | None = None) -> RequestContext:
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-request-id": "req-42"}
    raw = orjson.dumps(body or {})
    ctx = RequestContext(Request("POST", "/v1/chat/completions", "", headers, raw, "127.0.0.1"), "req-42",
                         "chat/completions")
    ctx.body = body or {}
    ctx.model, ctx.provider, ctx.upstream_model, ctx.user, ctx.status = "gpt-4o", "openai", "gpt-4o-2024", "bob", 200
    ctx.usage = Usage(11, 5)
    ctx.key = SimpleNamespace(alias="team-a-key", team="team-a")
    ctx.cache_status = "miss"
    ctx.attempts = 1
    ctx.first_byte_at = ctx.started + 0.05
    ctx.finished_at = ctx.started + 0.1
    ctx.output = output
    return ctx


def read_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_json_line_fields(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    stage = AccessLogStage(LineWriter.open(str(path)), "json")
    ctx = make_ctx({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    ctx.extensions["cost"] = 0.00042
    stage.settle(ctx)
    asyncio.run(stage.close())
    (line,) = read_lines(path)
    assert line["request_id"] == "req-42" and line["status"] == 200
    assert line["model"] == "gpt-4o" and line["provider"] == "openai" and line["upstream_model"] == "gpt-4o-2024"
    assert line["key_alias"] == "team-a-key" and line["team"] == "team-a" and line["user"] == "bob"
    assert line["prompt_tokens"] == 11 and line["completion_tokens"] == 5
    assert line["cost_usd"] == 0.00042 and line["cache"] == "miss"
    assert line["latency_ms"] == 100.0 and line["ttft_ms"] == 50.0
    assert "request_body" not in line and "response_body" not in line  # bodies are off by default
    assert CLIENT_KEY not in path.read_text()


def test_console_format(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    stage = AccessLogStage(LineWriter.open(str(path)), "console")
    stage.settle(make_ctx())
    asyncio.run(stage.close())
    text = path.read_text()
    assert text.count("\n") == 1
    assert " req-42 POST /v1/chat/completions 200 model=gpt-4o provider=openai key=team-a-key user=bob " in text
    assert "tokens=11+5" in text and "latency=100.0ms ttft=50.0ms cache=miss" in text


def test_bodies_are_redacted(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    redactor = Redactor([PROVIDER_KEY, MASTER_KEY])
    stage = AccessLogStage(LineWriter.open(str(path)), "json", bodies=True, redactor=redactor)
    body = {"model": "gpt-4o", "max_tokens": 20, "api_key": "whatever-secret-value",
            "messages": [{"role": "user", "content": f"my keys: {CLIENT_KEY} {PROVIDER_KEY} {MASTER_KEY} "
                                                     "sk-abcdefghijklmnop and Bearer eyJhbGciOiJIUzI1NiJ9"}]}
    answer = orjson.dumps({"id": "x", "model": "gpt-4o", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": f"echo {MASTER_KEY}"}, "finish_reason": "stop"}]})
    stage.settle(make_ctx(body, answer))
    asyncio.run(stage.close())
    text = path.read_text()
    for secret in (CLIENT_KEY, PROVIDER_KEY, MASTER_KEY, "whatever-secret-value", "sk-abcdefghijklmnop",
                   "eyJhbGciOiJIUzI1NiJ9"):
        assert secret not in text
    (line,) = read_lines(path)
    request_body = line["request_body"]
    assert isinstance(request_body, dict)
    assert request_body["max_tokens"] == 20  # not a secret, despite the name
    assert request_body["api_key"] == REDACTED
    assert line["response_body"] == f"echo {REDACTED}"


def test_client_credentials() -> None:
    assert client_credentials({"authorization": "Bearer abc", "x-api-key": "def"}) == ["abc", "def"]
    assert client_credentials({}) == []


def test_writer_buffers_until_the_timer(tmp_path: Path) -> None:
    path = tmp_path / "a.log"

    async def run() -> tuple[int, int]:
        writer = LineWriter.open(str(path))
        writer.write(b"one\n")
        writer.write(b"two\n")
        before = path.stat().st_size
        await asyncio.sleep(0.3)
        after = path.stat().st_size
        writer.close()
        return before, after

    assert asyncio.run(run()) == (0, 8)


def test_writer_flushes_when_full(tmp_path: Path) -> None:
    path = tmp_path / "b.log"
    writer = LineWriter.open(str(path))
    writer.write(b"x" * 70_000)  # over the buffer size: written at once, even with no loop
    assert path.read_bytes() == b"x" * 70_000
    writer.close()


def test_operational_logs_as_json(capsys: object) -> None:
    record = logging.LogRecord("llm_gateway", logging.WARNING, __file__, 1, "port %d busy", (9090,), None)
    out = orjson.loads(JsonFormatter().format(record))
    assert out["level"] == "warning" and out["message"] == "port 9090 busy" and out["logger"] == "llm_gateway"
    setup_logging(TelemetryConfig(log_format="console", log_level="error"))
    assert logging.getLogger().level == logging.ERROR


def test_writer_keeps_lines_whole_in_pipe_sized_writes(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    writer = LineWriter.open(str(path))
    writes: list[bytes] = []
    original = writer._write
    writer._write = lambda data: (writes.append(data), original(data))[1]  # type: ignore[method-assign]
    lines = [b"%05d " % i + b"y" * 100 + b"\n" for i in range(100)]
    for line in lines:
        writer._buf.append(line)
    writer.flush()
    writer.close()
    assert path.read_bytes() == b"".join(lines)
    assert len(writes) == 3 and all(len(w) <= 4096 and w.endswith(b"\n") for w in writes)


def test_telemetry_flags_and_env() -> None:
    def cfg(argv: list[str], env: dict[str, str]) -> TelemetryConfig:
        return build_config(resolve(build_parser().parse_args(argv), env), env).telemetry

    t = cfg([], {})
    assert (t.log_format, t.log_bodies, t.tracing.enabled, t.access_log) == ("json", False, False, True)
    t = cfg(["--log-format", "console", "--log-bodies", "--tracing"], {})
    assert (t.log_format, t.log_bodies, t.tracing.enabled) == ("console", True, True)
    t = cfg([], {"LLM_GATEWAY_LOG_FORMAT": "CONSOLE", "LLM_GATEWAY_TRACING": "true"})
    assert t.log_format == "console" and t.tracing.enabled
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--log-format", "xml"])
    with pytest.raises(ConfigError) as exc:
        parse_config({"telemetry": {"tracing": {"protocol": "thrift", "sample_ratio": 2}}}, env={})
    assert any(p.startswith("telemetry.tracing.protocol:") for p in exc.value.problems)
    assert any(p.startswith("telemetry.tracing.sample_ratio:") for p in exc.value.problems)
