"""Anthropic Messages responses, whole and streamed, as OpenAI chat completions and chunks."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.base import StreamDecoder
from llm_gateway.providers.chunks import ChunkWriter, completion, message_texts, tool_call
from llm_gateway.providers.error_map import KINDS
from llm_gateway.providers.sse import EventTranslator, event_fields
from llm_gateway.providers.usage_map import usage_from

# Anthropic error types -> gateway error kinds (see providers/error_map.py)
ERROR_KINDS = {"invalid_request_error": "invalid", "authentication_error": "auth",
               "permission_error": "permission", "not_found_error": "not_found", "request_too_large": "too_large",
               "rate_limit_error": "rate_limit", "api_error": "server", "overloaded_error": "overloaded",
               "timeout_error": "timeout"}
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter", "model_context_window_exceeded": "length"}


def to_chat_completion(msg: dict[str, Any], model: str) -> tuple[dict[str, Any], Usage | None, list[str]]:
    """(OpenAI chat.completion, usage, generated texts) of one Messages API response."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append(tool_call(block.get("id", ""), block.get("name", ""), args))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    finish = FINISH_REASONS.get(msg.get("stop_reason") or "", "stop")
    raw_usage = msg.get("usage")
    usage = usage_from("anthropic", raw_usage) if isinstance(raw_usage, dict) else None
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    out = completion(msg.get("id", ""), msg.get("model") or model, [choice], usage)
    return out, usage, message_texts(message)


class MessagesStreamDecoder(EventTranslator, StreamDecoder):
    """The state machine from Anthropic stream events to OpenAI chunks.

    message_start → role chunk; content_block_start(tool_use) → tool call head; content_block_delta → text,
    reasoning or argument deltas; message_delta → finish reason and output usage; message_stop → [DONE].
    """

    def __init__(self, model: str, wants_usage: bool) -> None:
        super().__init__()
        self._out = ChunkWriter(model, wants_usage)
        self._raw_usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self._done = False
        self.usage: Usage | None = None

    def _close(self) -> bytes:
        if self._done:
            return b""
        self._done = True  # the upstream ended without message_stop: still close the client's stream
        return self._out.end(self.usage)

    def completion_texts(self) -> list[str]:
        return self._out.texts

    def _note_usage(self, raw: Any) -> None:
        if isinstance(raw, dict):
            self._raw_usage.update({k: v for k, v in raw.items() if v is not None})
            self.usage = usage_from("anthropic", self._raw_usage)

    def _event(self, event: bytes) -> bytes:
        _, data = event_fields(event)
        if not data or self._done:
            return b""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        kind = obj.get("type")
        out = self._out
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return out.text(delta.get("text", ""))
            if dtype == "input_json_delta":
                partial = delta.get("partial_json", "")
                index = self._tools.get(obj.get("index", -1))
                return out.tool_arguments(index, partial) if partial and index is not None else b""
            if dtype == "thinking_delta":
                return out.text(delta.get("thinking", ""), key="reasoning_content")
            return b""
        if kind == "content_block_start":
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tools[obj.get("index", 0)] = len(self._tools)
                return out.tool_start(index, block.get("id", ""), block.get("name", ""))
            if block.get("type") == "text" and block.get("text"):
                return out.text(block["text"])
            return b""
        if kind == "message_start":
            message = obj.get("message") or {}
            out.id = message.get("id") or out.id
            out.model = message.get("model") or out.model
            self._note_usage(message.get("usage"))
            return out.delta({"role": "assistant", "content": ""})
        if kind == "message_delta":
            self._note_usage(obj.get("usage"))
            reason = (obj.get("delta") or {}).get("stop_reason")
            return out.finish(FINISH_REASONS.get(reason, "stop")) if reason else b""
        if kind == "message_stop":
            self._done = True
            return out.end(self.usage)
        if kind == "error":
            err = obj.get("error") or {}
            self._done = True
            _, etype, code = KINDS[ERROR_KINDS.get(err.get("type", ""), "server")]
            return out.error(err.get("message", "upstream error"), etype, code) + out.end(None)
        return b""  # ping, content_block_stop, and event types added later
