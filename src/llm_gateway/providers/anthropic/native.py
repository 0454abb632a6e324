"""Anthropic Messages answers relayed as they are to clients that speak Messages too: only usage and texts are read.

The texts (text, thinking and tool-input deltas) are kept so that a stream cut short can be counted.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.providers.base import RelayedStreamDecoder
from llm_gateway.providers.sse import event_fields
from llm_gateway.providers.usage_map import usage_from

DELTA_TEXT_KEYS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


class NativeMessagesDecoder(RelayedStreamDecoder):
    """Passes every event through unchanged; notes usage (message_start, message_delta) and generated texts."""

    def __init__(self) -> None:
        super().__init__()
        self._raw_usage: dict[str, Any] = {}

    def _event(self, event: bytes) -> bytes:
        _, data = event_fields(event)
        if data:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                self._note(obj)
        return event + b"\n\n"

    def _note(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            key = DELTA_TEXT_KEYS.get(delta.get("type", ""))
            if key is not None and isinstance(delta.get(key), str):
                self._texts.append(delta[key])
        elif kind in ("message_start", "message_delta"):
            raw = (obj.get("message") or {}).get("usage") if kind == "message_start" else obj.get("usage")
            if isinstance(raw, dict):
                self._raw_usage.update({k: v for k, v in raw.items() if v is not None})
                self.usage = usage_from("anthropic", self._raw_usage)
