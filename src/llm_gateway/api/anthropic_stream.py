"""The state machine from OpenAI chat.completion.chunk events to Anthropic Messages stream events."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.api.anthropic_wire import STOP_REASONS, error_object, usage_object
from llm_gateway.providers.sse import EventTranslator, event_fields, frame_event

# OpenAI error types that mean the same in Anthropic's vocabulary; any other becomes `api_error`
KEPT_ERROR_TYPES = ("invalid_request_error", "authentication_error", "permission_error", "rate_limit_error")


class MessagesStreamEncoder(EventTranslator):
    """message_start, then one content block per run of text / thinking / one tool call, then message_delta
    (stop reason and usage, known only at the end of an OpenAI stream) and message_stop."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self._started = False
        self._done = False
        self._block = -1  # index of the open content block, -1 when none is open
        self._block_kind = ""
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index -> content block index
        self._stop_reason = "end_turn"
        self._usage: dict[str, Any] | None = None
        self._id = ""
        self._count = -1

    @property
    def done(self) -> bool:
        return self._done

    def _close(self) -> bytes:
        """Close the stream (also when the OpenAI side ended without [DONE])."""
        return b"" if self._done else self._end()

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        self._id = chunk.get("id") or "msg_gateway"
        message: dict[str, Any] = {"id": self._id, "type": "message", "role": "assistant", "model": self.model,
                                   "content": [], "stop_reason": None, "stop_sequence": None,
                                   "usage": usage_object(None)}
        return frame_event("message_start", {"type": "message_start", "message": message})

    def _close_block(self) -> bytes:
        if self._block < 0:
            return b""
        index, self._block, self._block_kind = self._block, -1, ""
        return frame_event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._block = self._next_index()
        self._block_kind = kind
        return out + frame_event("content_block_start", {"type": "content_block_start", "index": self._block,
                                                         "content_block": block})

    def _next_index(self) -> int:
        self._count += 1
        return self._count

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return frame_event("content_block_delta", {"type": "content_block_delta", "index": self._block,
                                                   "delta": delta})

    def _text(self, kind: str, text: str) -> bytes:
        out = b""
        if self._block_kind != kind:
            empty = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": ""}
            out = self._open_block(kind, empty)
        if kind == "text":
            return out + self._delta({"type": "text_delta", "text": text})
        return out + self._delta({"type": "thinking_delta", "thinking": text})

    def _tool(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = call.get("index", 0)
        fn = call.get("function") or {}
        if index not in self._tools:
            out = self._open_block("tool", {"type": "tool_use", "id": call.get("id") or f"toolu_{index}",
                                            "name": fn.get("name", ""), "input": {}})
            self._tools[index] = self._block
        args = fn.get("arguments")
        if args and self._tools[index] == self._block:
            out += self._delta({"type": "input_json_delta", "partial_json": args})
        return out

    def _end(self) -> bytes:
        self._done = True
        out = b"" if self._started else self._start({})
        out += self._close_block()
        out += frame_event("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                                             "usage": usage_object(self._usage)})
        return out + frame_event("message_stop", {"type": "message_stop"})

    def _event(self, event: bytes) -> bytes:
        _, data = event_fields(event)
        if not data or self._done:
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
            self._done = True
            message = str(chunk["error"].get("message") or "upstream error")
            etype = chunk["error"].get("type")
            body = error_object(500, message)
            if etype in KEPT_ERROR_TYPES:
                body["error"]["type"] = etype
            return frame_event("error", body)
        out = b"" if self._started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                out += self._text("thinking", delta["reasoning_content"])
            if delta.get("content"):
                out += self._text("text", delta["content"])
            for call in delta.get("tool_calls") or ():
                out += self._tool(call)
            if choice.get("finish_reason"):
                self._stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out
