"""Gemini responses, whole and streamed (`alt=sse`), as OpenAI chat completions and chunks."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.base import StreamDecoder
from llm_gateway.providers.chunks import ChunkWriter, completion, message_texts, tool_call
from llm_gateway.providers.gemini.signatures import call_id_with_signature
from llm_gateway.providers.sse import EventTranslator, event_fields
from llm_gateway.providers.usage_map import usage_from

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                  "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
                  "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter", "IMAGE_SAFETY": "content_filter"}


def _finish(reason: str | None, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return FINISH_REASONS.get(reason or "STOP", "stop")


def _call_id(candidate: int, n: int, part: dict[str, Any]) -> str:
    """The OpenAI id of a function call part; its thought signature rides along (see gemini.signatures)."""
    call = part["functionCall"]
    call_id = str(call.get("id") or f"call_{candidate}_{n}")  # older Gemini models give calls no id
    return call_id_with_signature(call_id, part.get("thoughtSignature"))


def _usage(obj: dict[str, Any]) -> Usage | None:
    meta = obj.get("usageMetadata")
    return usage_from("gemini", meta) if isinstance(meta, dict) else None


def to_chat_completion(obj: dict[str, Any], model: str) -> tuple[dict[str, Any], Usage | None, list[str]]:
    choices = []
    texts: list[str] = []
    candidates = obj.get("candidates") or []
    if not candidates and (obj.get("promptFeedback") or {}).get("blockReason"):
        candidates = [{"index": 0, "finishReason": "SAFETY", "content": {"parts": []}}]
    for position, cand in enumerate(candidates):
        index = cand.get("index", position)
        content: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in (cand.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                fn = part["functionCall"]
                args = orjson.dumps(fn.get("args") or {}).decode()
                calls.append(tool_call(_call_id(index, len(calls), part), fn.get("name", ""), args))
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else content).append(part["text"])
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content) if content or not calls else None}
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        if calls:
            message["tool_calls"] = calls
        texts.extend(message_texts(message))
        choices.append({"index": index, "message": message, "logprobs": None,
                        "finish_reason": _finish(cand.get("finishReason"), bool(calls))})
    usage = _usage(obj)
    out = completion(obj.get("responseId") or "", obj.get("modelVersion") or model, choices, usage)
    return out, usage, texts


class GenerateStreamDecoder(EventTranslator, StreamDecoder):
    """Each SSE event is a whole GenerateContentResponse: parts become deltas, function calls arrive whole.

    Usage metadata is cumulative, so the last one seen wins; the stream ends when the upstream closes it.
    """

    def __init__(self, model: str, wants_usage: bool) -> None:
        super().__init__()
        self._out = ChunkWriter(model, wants_usage)
        self._seen: set[int] = set()
        self._calls: dict[int, int] = {}
        self._ended = False
        self.usage: Usage | None = None

    def _close(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        return self._out.end(self.usage)

    def completion_texts(self) -> list[str]:
        return self._out.texts

    def _event(self, event: bytes) -> bytes:
        _, data = event_fields(event)
        if not data or self._ended:
            return b""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if isinstance(obj.get("error"), dict):
            err = obj["error"]
            self._ended = True
            return self._out.error(str(err.get("message", "upstream error")), "upstream_error") + self._out.end(None)
        out = self._out
        if not self._seen:
            out.id = obj.get("responseId") or out.id
            out.model = obj.get("modelVersion") or out.model
        usage = _usage(obj)
        if usage is not None:
            self.usage = usage
        parts: list[bytes] = []
        for position, cand in enumerate(obj.get("candidates") or ()):
            index = cand.get("index", position)
            if index not in self._seen:
                self._seen.add(index)
                parts.append(out.delta({"role": "assistant", "content": ""}, index))
            for part in (cand.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    fn = part["functionCall"]
                    n = self._calls.get(index, 0)
                    self._calls[index] = n + 1
                    args = orjson.dumps(fn.get("args") or {}).decode()
                    parts.append(out.tool_start(n, _call_id(index, n, part), fn.get("name", ""), args, index))
                elif part.get("text"):
                    parts.append(out.text(part["text"], index, "reasoning_content" if part.get("thought") else
                                          "content"))
            if cand.get("finishReason"):
                parts.append(out.finish(_finish(cand["finishReason"], index in self._calls), index))
        return b"".join(parts)
