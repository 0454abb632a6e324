"""Bedrock Converse responses and ConverseStream events as OpenAI chat completions and chunks."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import UpstreamUnavailable
from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.base import StreamDecoder
from llm_gateway.providers.bedrock.eventstream import EventStreamReader
from llm_gateway.providers.chunks import ChunkWriter, completion, message_texts, tool_call
from llm_gateway.providers.error_map import KINDS
from llm_gateway.providers.usage_map import usage_from

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
                  "model_context_window_exceeded": "length"}
# exception event / x-amzn-errortype -> gateway error kind (see providers/error_map.py)
ERROR_KINDS = {"ValidationException": "invalid", "AccessDeniedException": "permission",
               "UnrecognizedClientException": "auth", "InvalidSignatureException": "auth",
               "ExpiredTokenException": "auth", "ResourceNotFoundException": "not_found",
               "ThrottlingException": "rate_limit", "ServiceQuotaExceededException": "rate_limit",
               "ServiceUnavailableException": "overloaded", "ModelNotReadyException": "overloaded",
               "ModelTimeoutException": "timeout", "InternalServerException": "server",
               "ModelErrorException": "server", "ModelStreamErrorException": "server"}


def to_chat_completion(obj: dict[str, Any], model: str, id: str) -> tuple[dict[str, Any], Usage | None, list[str]]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in ((obj.get("output") or {}).get("message") or {}).get("content") or ():
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(tool_call(use.get("toolUseId", ""), use.get("name", ""),
                                   orjson.dumps(use.get("input") or {}).decode()))
        elif "reasoningContent" in block:
            reasoning.append(((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text", ""))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    raw = obj.get("usage")
    usage = usage_from("bedrock", raw) if isinstance(raw, dict) else None
    choice = {"index": 0, "message": message, "logprobs": None,
              "finish_reason": FINISH_REASONS.get(obj.get("stopReason") or "", "stop")}
    return completion(id, model, [choice], usage), usage, message_texts(message)


class ConverseStreamDecoder(StreamDecoder):
    """The state machine from ConverseStream events to OpenAI chunks.

    messageStart → role chunk; contentBlockStart(toolUse) → tool call head; contentBlockDelta → text,
    reasoning or argument deltas; messageStop → finish reason; metadata → usage, then [DONE].
    """

    def __init__(self, model: str, wants_usage: bool, id: str) -> None:
        self._reader = EventStreamReader()
        self._out = ChunkWriter(model, wants_usage, id)
        self._tools: dict[int, int] = {}
        self._ended = False
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        return b"".join([self._message(h, p) for h, p in self._reader.feed(data)])

    def finish(self) -> bytes:
        if self._reader.pending:
            raise UpstreamUnavailable("the upstream event stream ended in the middle of a message")
        if self._ended:
            return b""
        self._ended = True
        return self._out.end(self.usage)

    def completion_texts(self) -> list[str]:
        return self._out.texts

    def _message(self, headers: dict[str, object], payload: bytes) -> bytes:
        if self._ended:
            return b""
        out = self._out
        try:
            obj: Any = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            obj = {}
        if headers.get(":message-type") in ("exception", "error"):
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "internalServerException")
            self._ended = True
            # exception events name types in camelCase (throttlingException), error headers in PascalCase
            _, etype, code = KINDS[ERROR_KINDS.get(name[:1].upper() + name[1:], "server")]
            message = str(obj.get("message") or obj.get("Message") or headers.get(":error-message") or name)
            return out.error(f"{name}: {message}", etype, code) + out.end(None)
        event = headers.get(":event-type")
        if event == "contentBlockDelta":
            delta = obj.get("delta") or {}
            if "text" in delta:
                return out.text(delta["text"])
            if "toolUse" in delta:
                index = self._tools.get(obj.get("contentBlockIndex", -1))
                partial = (delta["toolUse"] or {}).get("input", "")
                return out.tool_arguments(index, partial) if partial and index is not None else b""
            if "reasoningContent" in delta:
                text = (delta["reasoningContent"] or {}).get("text")
                return out.text(text, key="reasoning_content") if text else b""
            return b""
        if event == "contentBlockStart":
            use = (obj.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                index = self._tools[obj.get("contentBlockIndex", 0)] = len(self._tools)
                return out.tool_start(index, use.get("toolUseId", ""), use.get("name", ""))
            return b""
        if event == "messageStart":
            return out.delta({"role": obj.get("role", "assistant"), "content": ""})
        if event == "messageStop":
            return out.finish(FINISH_REASONS.get(obj.get("stopReason") or "", "stop"))
        if event == "metadata":
            raw = obj.get("usage")
            if isinstance(raw, dict):
                self.usage = usage_from("bedrock", raw)
            self._ended = True
            return out.end(self.usage)
        return b""  # contentBlockStop, and event types added later
