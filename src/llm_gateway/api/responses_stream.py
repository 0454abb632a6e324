"""The state machine from OpenAI chat.completion.chunk events to Responses API stream events.

response.created and response.in_progress open the stream; each run of reasoning, text or one tool call is an
output item (added, its deltas, done); the usage arrives last in a chat stream, so response.completed (or
response.incomplete) is written at `[DONE]`. An error chunk ends the stream with response.failed. `final` is
the finished Response object once the last event is written, for the store.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from llm_gateway.api.responses_wire import (
    INCOMPLETE,
    Names,
    call_item,
    message_item,
    reasoning_item,
    response_object,
    usage_object,
)
from llm_gateway.providers.sse import EventTranslator, event_fields


class _Item:
    """One output item while it streams."""

    __slots__ = ("body", "index", "kind", "parts")

    def __init__(self, index: int, kind: str, body: dict[str, Any]) -> None:
        self.index = index
        self.kind = kind  # "message", "reasoning" or "function_call"
        self.body = body
        self.parts: list[str] = []


class ResponsesStreamEncoder(EventTranslator):
    def __init__(self, rid: str, model: str, echo: dict[str, Any], names: Names | None = None) -> None:
        super().__init__()
        self.names = names or {}
        self.rid = rid
        self.model = model
        self.echo = echo
        self.created = int(time.time())
        self.final: dict[str, Any] | None = None
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any]] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool_calls index -> its item
        self._finish = ""
        self._usage: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.final is not None

    def _emit(self, kind: str, fields: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(self.rid, self.created, self.model, self.echo, list(self._output), extra.pop(
            "usage", None), status, **extra)

    def _start(self) -> bytes:
        self._started = True
        snapshot = self._response("in_progress")
        return (self._emit("response.created", {"response": snapshot})
                + self._emit("response.in_progress", {"response": snapshot}))

    # -- output items
    def _add(self, kind: str, body: dict[str, Any]) -> tuple[_Item, bytes]:
        out = self._close_open()
        item = _Item(len(self._output), kind, body)
        self._output.append(body)
        out += self._emit("response.output_item.added", {"output_index": item.index, "item": body})
        return item, out

    def _close_open(self) -> bytes:
        item, self._open = self._open, None
        return self._done_item(item) if item is not None else b""

    def _done_item(self, item: _Item) -> bytes:
        text = "".join(item.parts)
        at = {"item_id": item.body["id"], "output_index": item.index}
        out = b""
        if item.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out += self._emit("response.output_text.done", {**at, "content_index": 0, "text": text, "logprobs": []})
            out += self._emit("response.content_part.done", {**at, "content_index": 0, "part": part})
            item.body.update(status="completed", content=[part])
        elif item.kind == "reasoning":
            part = {"type": "summary_text", "text": text}
            out += self._emit("response.reasoning_summary_text.done", {**at, "summary_index": 0, "text": text})
            out += self._emit("response.reasoning_summary_part.done", {**at, "summary_index": 0, "part": part})
            item.body["summary"] = [part]
        else:
            item.body.update(status="completed", arguments=text)
            out += self._emit("response.function_call_arguments.done",
                              {**at, "name": item.body["name"], "arguments": text})
        return out + self._emit("response.output_item.done", {"output_index": item.index, "item": item.body})

    def _text(self, kind: str, delta: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item.kind != kind:
            if kind == "message":
                body = message_item("", status="in_progress")
                item, out = self._add(kind, body)
                out += self._emit("response.content_part.added", {
                    "item_id": body["id"], "output_index": item.index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
            else:
                body = reasoning_item("")
                body["summary"] = []
                item, out = self._add(kind, body)
                out += self._emit("response.reasoning_summary_part.added", {
                    "item_id": body["id"], "output_index": item.index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}})
            self._open = item
        item.parts.append(delta)
        at = {"item_id": item.body["id"], "output_index": item.index}
        if kind == "message":
            return out + self._emit("response.output_text.delta",
                                    {**at, "content_index": 0, "delta": delta, "logprobs": []})
        return out + self._emit("response.reasoning_summary_text.delta", {**at, "summary_index": 0, "delta": delta})

    def _tool(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = call.get("index", 0)
        fn = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            body = call_item(call.get("id") or f"call_{index}", fn.get("name") or "", "", self.names,
                             status="in_progress")
            item, out = self._add("function_call", body)
            self._calls[index] = self._open = item
        args = fn.get("arguments")
        if args:
            item.parts.append(args)
            out += self._emit("response.function_call_arguments.delta",
                              {"item_id": item.body["id"], "output_index": item.index, "delta": args})
        return out

    # -- the end
    def _end(self) -> bytes:
        out = b"" if self._started else self._start()
        out += self._close_open()
        reason = INCOMPLETE.get(self._finish)
        usage = usage_object(self._usage)
        if reason:
            self.final = self._response("incomplete", usage=usage, incomplete=reason)
            return out + self._emit("response.incomplete", {"response": self.final})
        self.final = self._response("completed", usage=usage)
        return out + self._emit("response.completed", {"response": self.final})

    def fail(self, message: str, code: str = "server_error") -> bytes:
        """End the stream with response.failed (an upstream error after the stream began)."""
        out = b"" if self._started else self._start()
        self.final = self._response("failed", error={"code": code, "message": message})
        return out + self._emit("response.failed", {"response": self.final})

    def _close(self) -> bytes:
        return b"" if self.final is not None else self._end()

    def _event(self, event: bytes) -> bytes:
        _, data = event_fields(event)
        if not data or self.final is not None:
            return b""
        if data == b"[DONE]":
            return self._end()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if isinstance(chunk.get("error"), dict):
            return self.fail(str(chunk["error"].get("message") or "upstream error"))
        out = b"" if self._started else self._start()
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                out += self._text("reasoning", delta["reasoning_content"])
            if delta.get("content"):
                out += self._text("message", delta["content"])
            for call in delta.get("tool_calls") or ():
                out += self._tool(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out


LIFECYCLE = (b"response.created", b"response.in_progress", b"response.queued", b"response.completed",
             b"response.incomplete", b"response.failed")
SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')
FINAL = ("response.completed", "response.incomplete", "response.failed")


class NativeStreamTap(EventTranslator):
    """A Responses stream from a provider that speaks Responses itself: relayed event by event, with the
    gateway's response id in place of the provider's, and the final Response object kept for the store."""

    def __init__(self, rid: str, patch: dict[str, Any]) -> None:
        super().__init__()
        self.rid = rid
        self.patch = patch  # set on every Response object of the stream: the gateway's id, the chain's link
        self.final: dict[str, Any] | None = None
        self._snapshot: dict[str, Any] = {"object": "response", "status": "in_progress", "output": [], **patch}
        self._seq = 0

    @property
    def done(self) -> bool:
        return self.final is not None

    def _close(self) -> bytes:
        return b""

    def _failed(self, message: str) -> bytes:
        """The gateway's error after the stream began (the upstream broke off): response.failed."""
        self.final = {**self._snapshot, "status": "failed", "error": {"code": "server_error", "message": message}}
        payload = {"type": "response.failed", "sequence_number": self._seq, "response": self.final}
        return b"event: response.failed\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _failed_from(self, data: bytes) -> bytes:
        try:
            error = orjson.loads(data)["error"]
            message = str(error.get("message") or "upstream error")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            message = "upstream error"
        return self._failed(message)

    def _event(self, event: bytes) -> bytes:
        name, data = event_fields(event)
        if data.startswith(b'{"error"'):
            return self._failed_from(data)
        seq = SEQUENCE.search(data)
        if seq is not None:
            self._seq = int(seq.group(1)) + 1
        if not any(kind in data[:80] for kind in LIFECYCLE) and not (name and name in LIFECYCLE):
            return event + b"\n\n"
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event + b"\n\n"
        response = obj.get("response") if isinstance(obj, dict) else None
        if not isinstance(response, dict):
            return event + b"\n\n"
        response.update(self.patch)
        self._snapshot = response
        if obj.get("type") in FINAL:
            self.final = response
        head = b"event: " + name + b"\n" if name else b""
        return head + b"data: " + orjson.dumps(obj) + b"\n\n"
