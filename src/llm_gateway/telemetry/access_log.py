"""The access log: one JSON (or console) line per request, built with orjson and written straight to a fd.

Not stdlib logging: a formatter and handler lock per request cost more than the rest of settle. Lines are
buffered and written by a timer on the event loop (or when the buffer fills), and flushed at shutdown.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson

from llm_gateway.pipeline.context import RequestContext
from llm_gateway.telemetry.fields import cache_result, cost_of, key_alias_of, team_of
from llm_gateway.telemetry.output import read_answer
from llm_gateway.telemetry.redact import Redactor, client_credentials

FLUSH_AFTER_S = 0.2
FLUSH_AT_BYTES = 64 * 1024
PIPE_BUF = 4096


class LineWriter:
    """Appends lines to a file descriptor through a small in-memory buffer."""

    def __init__(self, fd: int, owns_fd: bool = False) -> None:
        self.fd = fd
        self.owns_fd = owns_fd
        self._buf: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def open(cls, path: str | None) -> LineWriter:
        if path is None:
            return cls(1)
        return cls(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640), owns_fd=True)

    def write(self, line: bytes) -> None:
        self._buf.append(line)
        self._size += len(line)
        if self._size >= FLUSH_AT_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self.flush)
            except RuntimeError:  # no loop (tools, tests): write now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf:
            return
        lines, self._buf, self._size = self._buf, [], 0
        # Writes of at most PIPE_BUF bytes are atomic on a pipe: with several workers sharing stdout, lines
        # stay whole. One write per PIPE_BUF of lines keeps the syscalls few.
        chunk: list[bytes] = []
        size = 0
        try:
            for line in lines:
                if size + len(line) > PIPE_BUF and chunk:
                    self._write(b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                self._write(b"".join(chunk))
        except OSError:
            pass  # a closed or full non-blocking stdout: dropping log lines beats failing requests

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        self.flush()
        if self.owns_fd:
            os.close(self.fd)


def access_record(ctx: RequestContext) -> dict[str, Any]:
    """The fields of one access line; only bounded, non-secret facts about the request."""
    usage = ctx.usage
    rec: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "level": "info" if ctx.status < 500 else "error",
        "event": "request",
        "request_id": ctx.request_id,
        "method": ctx.request.method,
        "path": ctx.request.path,
        "status": ctx.status,
        "model": ctx.model,
        "provider": ctx.provider,
        "upstream_model": ctx.upstream_model,
        "key_alias": key_alias_of(ctx) or None,
        "user": ctx.user or None,
        "team": team_of(ctx) or None,
        "stream": ctx.stream,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "tokens_estimated": usage.estimated if usage else False,
        "cost_usd": cost_of(ctx),
        "latency_ms": round(ctx.latency * 1000, 3),
        "ttft_ms": round(ctx.ttft * 1000, 3) if ctx.first_byte_at else None,
        "cache": cache_result(ctx) or ctx.cache_status or None,
        "attempts": ctx.attempts,
    }
    if ctx.error_type:
        rec["error_type"] = ctx.error_type
    if ctx.disconnected:
        rec["disconnected"] = True
    return rec


def console_line(rec: dict[str, Any]) -> bytes:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec["ts"]))
    ttft = "-" if rec["ttft_ms"] is None else f"{rec['ttft_ms']:.1f}ms"
    cost = "-" if rec["cost_usd"] is None else f"${rec['cost_usd']:.6f}"
    extra = "".join(f" {k}={orjson.dumps(v).decode()}" for k, v in rec.items()
                    if k in ("error_type", "disconnected", "request_body", "response_body"))
    return (f"{ts} {rec['request_id']} {rec['method']} {rec['path']} {rec['status']} model={rec['model'] or '-'} "
            f"provider={rec['provider'] or '-'} key={rec['key_alias'] or '-'} user={rec['user'] or '-'} "
            f"tokens={rec['prompt_tokens']}+{rec['completion_tokens']} cost={cost} "
            f"latency={rec['latency_ms']:.1f}ms ttft={ttft} cache={rec['cache'] or '-'}"
            f"{extra}\n").encode("utf-8", "replace")


class AccessLogStage:
    """A settle stage; runs after usage and cost so the line carries them."""

    def __init__(self, writer: LineWriter, fmt: str = "json", bodies: bool = False,
                 redactor: Redactor | None = None) -> None:
        self.writer = writer
        self.json = fmt == "json"
        self.bodies = bodies
        self.redactor = redactor or Redactor(())

    admit = None  # nothing to do before the upstream call
    records = True  # settles by recording what happened: may run later (pipeline.stack)

    def settle(self, ctx: RequestContext) -> None:
        rec = access_record(ctx)
        if self.bodies:
            self._add_bodies(ctx, rec)
        if self.json:
            self.writer.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        else:
            self.writer.write(console_line(rec))

    def _add_bodies(self, ctx: RequestContext, rec: dict[str, Any]) -> None:
        extra = client_credentials(ctx.request.headers)
        if ctx.body:
            rec["request_body"] = orjson.Fragment(self.redactor.scrub(orjson.dumps(ctx.body, default=str), extra))
        answer = read_answer(ctx, texts=True)
        if answer.texts:
            rec["response_body"] = self.redactor.scrub_text("".join(answer.texts), extra)

    async def close(self) -> None:
        self.writer.close()
