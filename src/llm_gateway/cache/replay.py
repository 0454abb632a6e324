"""Cached answers in and out: a streamed answer assembled into one chat.completion, and replay as JSON or SSE."""

from __future__ import annotations

import time
from typing import Any

import orjson

from llm_gateway.pipeline.context import RequestContext, Usage
from llm_gateway.providers.sse import DONE, EventSplitter, event_fields, frame
from llm_gateway.server.http import Responder


class _Choice:
    __slots__ = ("content", "finish_reason", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None


class StreamCapture:
    """Fed the SSE bytes the client received; rebuilds the whole chat.completion they describe."""

    def __init__(self) -> None:
        self._split = EventSplitter()
        self._head: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        for event in self._split.feed(data):
            self._event(event)

    def _event(self, event: bytes) -> None:
        _, payload = event_fields(event)
        if not payload or payload == b"[DONE]":
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.broken = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.broken = True
            return
        if not self._head:
            self._head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        for choice in chunk.get("choices") or ():
            self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        index = int(choice.get("index") or 0)
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = _Choice()
        delta = choice.get("delta") or {}
        if isinstance(delta.get("role"), str):
            state.role = delta["role"]
        if isinstance(delta.get("content"), str):
            state.content.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            state.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            slot = state.tool_calls.setdefault(int(call.get("index") or 0),
                                               {"id": "", "type": "function", "name": "", "arguments": ""})
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") or {}
            slot["name"] += fn.get("name") or ""
            slot["arguments"] += fn.get("arguments") or ""
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]

    def result(self, usage: Usage | None) -> bytes | None:
        """The assembled chat.completion, or None when the stream was cut or carried an error."""
        if self.broken or not self._choices or any(c.finish_reason is None for c in self._choices.values()):
            return None
        choices = []
        for index in sorted(self._choices):
            c = self._choices[index]
            message: dict[str, Any] = {"role": c.role, "content": "".join(c.content) if c.content else None}
            if c.refusal:
                message["refusal"] = "".join(c.refusal)
            if c.tool_calls:
                message["tool_calls"] = [
                    {"id": t["id"], "type": t["type"], "function": {"name": t["name"], "arguments": t["arguments"]}}
                    for _, t in sorted(c.tool_calls.items())]
            choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": c.finish_reason})
        out: dict[str, Any] = {"id": self._head.get("id", ""), "object": "chat.completion",
                               "created": self._head.get("created", int(time.time())),
                               "model": self._head.get("model", ""), "choices": choices}
        if "system_fingerprint" in self._head:
            out["system_fingerprint"] = self._head["system_fingerprint"]
        if usage is not None:
            out["usage"] = usage_dict(usage)
        return orjson.dumps(out)


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def answer_calls_tools(answer: dict[str, Any]) -> bool:
    for choice in answer.get("choices") or ():
        message = choice.get("message") or {}
        if message.get("tool_calls") or message.get("function_call") or choice.get("finish_reason") == "tool_calls":
            return True
    return False


def sse_events(answer: dict[str, Any], with_usage: bool) -> list[bytes]:
    """A chat.completion as the chat.completion.chunk events a live stream of it would have sent."""
    base = {"id": answer.get("id", ""), "object": "chat.completion.chunk", "created": answer.get("created", 0),
            "model": answer.get("model", "")}
    if "system_fingerprint" in answer:
        base["system_fingerprint"] = answer["system_fingerprint"]
    events: list[bytes] = []

    def emit(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        events.append(frame({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                   "finish_reason": finish}]}))

    for choice in answer.get("choices") or ():
        index = int(choice.get("index") or 0)
        message = choice.get("message") or {}
        emit(index, {"role": message.get("role") or "assistant", "content": ""})
        if message.get("content"):
            emit(index, {"content": message["content"]})
        if message.get("refusal"):
            emit(index, {"refusal": message["refusal"]})
        for i, call in enumerate(message.get("tool_calls") or ()):
            emit(index, {"tool_calls": [{"index": i, "id": call.get("id"), "type": call.get("type", "function"),
                                         "function": call.get("function") or {}}]})
        emit(index, {}, choice.get("finish_reason") or "stop")
    if with_usage and isinstance(answer.get("usage"), dict):
        events.append(frame({**base, "choices": [], "usage": answer["usage"]}))
    events.append(DONE)
    return events


async def replay(ctx: RequestContext, responder: Responder, answer: bytes, headers: list[tuple[str, str]]) -> None:
    """Send a cached answer in the shape the client asked for: JSON as stored, or an SSE stream."""
    ctx.status = 200
    ctx.first_byte_at = time.perf_counter()
    if not ctx.stream:
        responder.send(200, answer, headers)
        return
    events = sse_events(orjson.loads(answer), ctx.client_wants_usage)
    responder.start(200, headers)
    await responder.write(b"".join(events))
    responder.end()
