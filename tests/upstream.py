"""A local OpenAI-compatible upstream for tests; its behaviour is chosen by the model name.

Model names (anything else answers normally, with usage):
  no-usage        answers without `usage` (like llama.cpp streams): the gateway must count
  error-400 / error-401 / error-429 / error-500 / error-503
                  answers that status with an OpenAI-shaped error body (429 with Retry-After: 1)
  error-text      answers 502 with a plain-text body (not OpenAI-shaped)
  slow-N          waits N milliseconds before answering / between stream chunks
  hang            never answers
  cut-stream      sends three chunks, then drops the connection
  flaky-N-TAG     answers 503 the first N times this exact model name is seen, normally afterwards
  limited-S-TAG   answers 429 with `Retry-After: S` the first time this exact model name is seen
  reset / reset-once-TAG
                  drops the connection without answering (always / the first time)
  garbage         answers bytes that are not HTTP, then closes
  error-context   answers 400 `context_length_exceeded`
  stall-stream    streams the first chunk, then goes silent forever
  garbage-stream  streams two chunks, then bytes that break the HTTP chunked encoding
  ttft-N          waits N milliseconds before the first byte of the answer only
  n-slow-N        (not streamed) waits N milliseconds, then answers `n` choices of `max_tokens` words each, with
                  usage counting every choice, as OpenAI bills them
  images-slow-N   (not streamed) waits N milliseconds, then answers with 11 prompt tokens plus 765 for each
                  `image_url` part (OpenAI's count of a 1024x1024 picture)
Every request is recorded (method, path, headers, JSON body) in `Upstream.requests`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

WORDS = "The quick brown fox jumps over the lazy dog".split()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Upstream:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    chunks: int = 5
    seen: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error(status: int, message: str, etype: str, code: str | None = None) -> web.Response:
    headers = {"retry-after": "1"} if status == 429 else {}
    return web.json_response({"error": {"message": message, "type": etype, "param": None, "code": code}},
                             status=status, headers=headers)


def _delay(model: str) -> float:
    if model.startswith("slow-"):
        return int(model.split("-", 1)[1]) / 1000
    return 0.0


async def _abort(request: web.Request, data: bytes = b"") -> web.Response:
    assert request.transport is not None
    if data:
        request.transport.write(data)
    request.transport.abort()
    await asyncio.sleep(3600)  # the handler is cancelled when the connection goes
    raise AssertionError("unreachable")


async def _respond(response: web.Response) -> web.Response:
    return response


def _fault(model: str, times: int, request: web.Request) -> Any:
    """The awaitable answer of a fault-injecting model name, or None for a normal answer."""
    parts = model.split("-")
    if parts[0] == "flaky" and times <= int(parts[1]):
        return _respond(_error(503, f"simulated 503 ({times})", "server_error", "simulated"))
    if parts[0] == "limited" and times == 1:
        resp = _error(429, "simulated 429", "rate_limit_error", "simulated")
        resp.headers["retry-after"] = parts[1]
        return _respond(resp)
    if model == "reset" or (model.startswith("reset-once-") and times == 1):
        return _abort(request)
    if model == "garbage":
        return _abort(request, b"\x00\x01 this is not HTTP at all \xff\r\n\r\n")
    if model == "error-context":
        return _respond(_error(400, "This model's maximum context length is 8192 tokens.",
                               "invalid_request_error", "context_length_exceeded"))
    return None


async def _n_choices(body: dict[str, Any], delay: float) -> web.Response:
    await asyncio.sleep(delay)
    n, per_choice = int(body.get("n") or 1), int(body.get("max_tokens") or 5)
    text = " ".join(WORDS[i % len(WORDS)] for i in range(per_choice))
    choices = [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": "length"} for i in range(n)]
    return web.json_response({"id": "chatcmpl-n", "object": "chat.completion", "created": int(time.time()),
                              "model": body.get("model"), "choices": choices, "usage": _usage(11, n * per_choice)})


async def _with_images(body: dict[str, Any], delay: float) -> web.Response:
    await asyncio.sleep(delay)
    images = sum(1 for m in body.get("messages") or () if isinstance(m.get("content"), list)
                 for part in m["content"] if part.get("type") == "image_url")
    return web.json_response({"id": "chatcmpl-img", "object": "chat.completion", "created": int(time.time()),
                              "model": body.get("model"), "choices": [
                                  {"index": 0, "message": {"role": "assistant", "content": "A picture"},
                                   "logprobs": None, "finish_reason": "stop"}],
                              "usage": _usage(11 + 765 * images, 2)})


def make_app(state: Upstream) -> web.Application:
    async def record(request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        state.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), body, raw))
        return body

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await record(request) or {}
        model = str(body.get("model", ""))
        state.seen[model] = times = state.seen.get(model, 0) + 1
        fault = _fault(model, times, request)
        if fault is not None:
            return await fault
        if model.startswith("error-"):
            kind = model.split("-", 1)[1]
            if kind == "text":
                return web.Response(status=502, text="Bad Gateway from the upstream's proxy")
            status = int(kind)
            etype = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_error"}.get(
                status, "server_error")
            return _error(status, f"simulated {status}", etype, "simulated")
        if model == "hang":
            await asyncio.sleep(3600)
        if model.startswith("n-slow-"):
            return await _n_choices(body, int(model.rsplit("-", 1)[1]) / 1000)
        if model.startswith("images-slow-"):
            return await _with_images(body, int(model.rsplit("-", 1)[1]) / 1000)
        delay = _delay(model)
        first_token = int(model.split("-")[1]) / 1000 if model.startswith("ttft-") else 0.0
        words = [WORDS[i % len(WORDS)] for i in range(state.chunks)]
        prompt_tokens = 5_000_000_000 if model == "huge-usage" else 11  # past a 32-bit column
        created = int(time.time())
        base = {"id": "chatcmpl-test", "created": created, "model": model, "system_fingerprint": "fp_test"}
        with_usage = model != "no-usage"
        if not body.get("stream"):
            if delay or first_token:
                await asyncio.sleep(delay or first_token)
            message: dict[str, Any] = {"role": "assistant", "content": " ".join(words)}
            if body.get("tools"):
                message = {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": body["tools"][0]["function"]["name"], "arguments": '{"city":"Paris"}'}}]}
            out = {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "logprobs": None,
                 "finish_reason": "tool_calls" if body.get("tools") else "stop"}]}
            if with_usage:
                out["usage"] = _usage(prompt_tokens, len(words))
            return web.json_response(out)
        include = bool((body.get("stream_options") or {}).get("include_usage")) and with_usage
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        if first_token:
            await asyncio.sleep(first_token)

        async def send(obj: Any) -> None:
            if include and isinstance(obj, dict):
                obj.setdefault("usage", None)
            await resp.write(b"data: " + orjson.dumps(obj) + b"\n\n")

        await send({**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for i, word in enumerate(words):
            if delay:
                await asyncio.sleep(delay)
            if model == "garbage-stream" and i == 2:  # breaks the chunked encoding half-way
                assert request.transport is not None
                request.transport.write(b"\r\nnot a chunk size\r\n\r\n")
                await asyncio.sleep(3600)
            if model == "stall-stream" and i == 1:
                await asyncio.sleep(3600)
            if model == "cut-stream" and i == 3:
                assert request.transport is not None
                request.transport.abort()
                return resp
            text = word if i == 0 else " " + word
            await send({**base, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
        await send({**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include:
            await send({**base, "object": "chat.completion.chunk", "choices": [],
                        "usage": _usage(prompt_tokens, len(words))})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def completions(request: web.Request) -> web.Response:
        body = await record(request) or {}
        return web.json_response({"id": "cmpl-test", "object": "text_completion", "created": int(time.time()),
                                  "model": body.get("model"), "choices": [
                                      {"index": 0, "text": " world", "logprobs": None, "finish_reason": "stop"}],
                                  "usage": _usage(2, 1)})

    async def embeddings(request: web.Request) -> web.Response:
        body = await record(request) or {}
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(items))]
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": 4 * len(items), "total_tokens": 4 * len(items)}})

    async def models(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"object": "list", "data": [
            {"id": "upstream-model", "object": "model", "created": 0, "owned_by": "test"}]})

    async def other(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"echo": request.path, "method": request.method})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_route("*", "/v1/{tail:.*}", other)
    return app


class UpstreamThread:
    """Runs the upstream on its own event loop in a thread, so sync and async tests can both use it."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.state = Upstream()
        self.host = host
        self.port = port or free_port()
        self.state.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="test-upstream", daemon=True)

    def start(self) -> Upstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test upstream did not start")
        return self.state

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        # hanging handlers (`hang`, `stall-stream`) must not hold the test session's end for a minute
        self._runner = web.AppRunner(make_app(self.state), access_log=None, shutdown_timeout=0.5)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port).start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        pending = asyncio.all_tasks(loop)  # handlers still hanging (`hang`, `stall-stream`)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending))
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
