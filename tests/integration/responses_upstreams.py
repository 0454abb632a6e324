"""Local upstreams for the /v1/responses tests: an Anthropic Messages API and an OpenAI Responses API.

Anthropic (`/anthropic/v1/messages`): answers `turn N: <last user text>` (N: the user turns it was sent), a
`tool_use` of the first tool while the last user turn is not a tool result, JSON text when an output format is
asked for; streamed or not, with usage (input 10 per user turn, output 5). For the model `claude-linger` the
stream's connection stays open for a second after its last event.
OpenAI Responses (`/openai/v1/responses`): answers `native: <last input text>` with its own `resp_` id, streamed
(the documented event sequence) or not. Every request's raw body is kept.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
from aiohttp import web
from tests.upstream import free_port

RECEIVED = web.AppKey("received", list)


def _sse(kind: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **obj}) + b"\n\n"


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content if b.get("type") == "text"]
        if texts:
            return texts[-1]
    return ""


def _anthropic_content(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    after_tool = isinstance(last.get("content"), list) and any(
        b.get("type") == "tool_result" for b in last["content"])
    if body.get("tools") and not after_tool:
        tool = body["tools"][0]
        return [{"type": "tool_use", "id": "toolu_01", "name": tool["name"], "input": {"city": "Paris"}}], "tool_use"
    turns = sum(1 for m in messages if m.get("role") == "user" and not (
        isinstance(m.get("content"), list) and all(b.get("type") == "tool_result" for b in m["content"])))
    if (body.get("output_config") or {}).get("format"):
        text = orjson.dumps({"city": "Paris", "turns": turns}).decode()
    else:
        text = f"turn {turns}: {_last_user_text(messages)}"
    return [{"type": "text", "text": text}], "end_turn"


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    request.app[RECEIVED].append((request.path, raw))
    body = orjson.loads(raw)
    content, stop = _anthropic_content(body)
    users = sum(1 for m in body.get("messages") or [] if m.get("role") == "user")
    usage = {"input_tokens": 10 * users, "output_tokens": 5}
    message = {"id": "msg_01", "type": "message", "role": "assistant", "model": body["model"]}
    if not body.get("stream"):
        return web.json_response({**message, "content": content, "stop_reason": stop, "stop_sequence": None,
                                  "usage": usage})
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_sse("message_start", {"message": {**message, "content": [], "stop_reason": None,
                                                        "usage": {**usage, "output_tokens": 1}}}))
    block = content[0]
    if block["type"] == "text":
        await resp.write(_sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
        half = len(block["text"]) // 2
        for piece in (block["text"][:half], block["text"][half:]):
            await resp.write(_sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                                "text": piece}}))
    else:
        await resp.write(_sse("content_block_start", {"index": 0, "content_block": {**block, "input": {}}}))
        args = orjson.dumps(block["input"]).decode()
        for piece in (args[:5], args[5:]):
            await resp.write(_sse("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                                                "partial_json": piece}}))
    await resp.write(_sse("content_block_stop", {"index": 0}))
    await resp.write(_sse("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                            "usage": {"output_tokens": 5}}))
    await resp.write(_sse("message_stop", {}))
    if body["model"] == "claude-linger":  # the connection stays open a while after the last event
        await asyncio.sleep(1.0)
    await resp.write_eof()
    return resp


def _native_text(body: dict[str, Any]) -> str:
    items = body.get("input")
    if isinstance(items, str):
        return f"native: {items}"
    for item in reversed(items or []):
        if item.get("role") == "user":
            content = item.get("content")
            text = content if isinstance(content, str) else content[-1].get("text", "")
            return f"native: {text} ({len(items)} items)"
    return "native: ?"


async def openai_responses(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    request.app[RECEIVED].append((request.path, raw))
    body = orjson.loads(raw)
    text = _native_text(body)
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": "msg_up1", "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    usage = {"input_tokens": 21, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 7,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 28}
    response = {"id": "resp_upstream1", "object": "response", "created_at": 1760000000, "status": "completed",
                "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
                "model": body["model"], "output": [item], "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": [], "usage": usage, "metadata": {}, "text": {"format": {"type": "text"}}}
    if not body.get("stream"):
        return web.json_response(response)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    start = {**response, "status": "in_progress", "output": [], "usage": None}
    seq = iter(range(100))
    at = {"item_id": "msg_up1", "output_index": 0}
    for kind, obj in (
            ("response.created", {"response": start}), ("response.in_progress", {"response": start}),
            ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress",
                                                                         "content": []}}),
            ("response.content_part.added", {**at, "content_index": 0, "part": {**part, "text": ""}}),
            ("response.output_text.delta", {**at, "content_index": 0, "delta": text[:7], "logprobs": []}),
            ("response.output_text.delta", {**at, "content_index": 0, "delta": text[7:], "logprobs": []}),
            ("response.output_text.done", {**at, "content_index": 0, "text": text, "logprobs": []}),
            ("response.content_part.done", {**at, "content_index": 0, "part": part}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": response})):
        await resp.write(_sse(kind, {**obj, "sequence_number": next(seq)}))
    await resp.write_eof()
    return resp


class ProviderMocks:
    """Both mocks on one port, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, bytes]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for p, raw in self.received if p == path]

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app[RECEIVED] = self.received
        app.router.add_post("/anthropic/v1/messages", anthropic_messages)
        app.router.add_post("/openai/v1/responses", openai_responses)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    def start(self) -> ProviderMocks:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
