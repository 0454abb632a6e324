"""OpenAI `chat.completion.chunk` events, written by the stream state machines of translating providers."""

from __future__ import annotations

import time
from typing import Any

from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.sse import DONE, frame
from llm_gateway.providers.usage_map import openai_usage


class ChunkWriter:
    """Frames deltas as OpenAI chunks with one id/model/created; the last events follow the client's wishes."""

    __slots__ = ("created", "id", "model", "texts", "wants_usage")

    def __init__(self, model: str, wants_usage: bool, id: str = "") -> None:
        self.id = id or f"chatcmpl-{time.time_ns():x}"
        self.model = model
        self.created = int(time.time())
        self.wants_usage = wants_usage
        self.texts: list[str] = []

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": choices}

    def delta(self, delta: dict[str, Any], index: int = 0, finish_reason: str | None = None) -> bytes:
        return frame(self._chunk([{"index": index, "delta": delta, "logprobs": None,
                                   "finish_reason": finish_reason}]))

    def text(self, text: str, index: int = 0, key: str = "content") -> bytes:
        self.texts.append(text)
        return self.delta({key: text}, index)

    def tool_start(self, tool_index: int, call_id: str, name: str, arguments: str = "", index: int = 0) -> bytes:
        self.texts.append(name)
        if arguments:
            self.texts.append(arguments)
        return self.delta({"tool_calls": [{"index": tool_index, "id": call_id, "type": "function",
                                           "function": {"name": name, "arguments": arguments}}]}, index)

    def tool_arguments(self, tool_index: int, arguments: str, index: int = 0) -> bytes:
        self.texts.append(arguments)
        return self.delta({"tool_calls": [{"index": tool_index, "function": {"arguments": arguments}}]}, index)

    def finish(self, reason: str, index: int = 0) -> bytes:
        return self.delta({}, index, reason)

    def end(self, usage: Usage | None) -> bytes:
        """The usage chunk (only when the client asked for it) and `[DONE]`."""
        if self.wants_usage and usage is not None:
            chunk = self._chunk([])
            chunk["usage"] = openai_usage(usage)
            return frame(chunk) + DONE
        return DONE

    def error(self, message: str, etype: str, code: str | None = None) -> bytes:
        return frame({"error": {"message": message, "type": etype, "code": code, "param": None}})


def completion(id: str, model: str, choices: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any]:
    """A whole OpenAI `chat.completion` object."""
    out: dict[str, Any] = {"id": id, "object": "chat.completion", "created": int(time.time()), "model": model,
                           "choices": choices}
    if usage is not None:
        out["usage"] = openai_usage(usage)
    return out


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def message_texts(message: dict[str, Any]) -> list[str]:
    texts = [message[k] for k in ("content", "reasoning_content") if isinstance(message.get(k), str)]
    for call in message.get("tool_calls") or ():
        texts.extend((call["function"]["name"], call["function"]["arguments"]))
    return texts
