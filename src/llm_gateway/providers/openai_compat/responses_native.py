"""Responses API answers relayed as they are to clients that called /v1/responses: only usage and texts are read.

Used for the deployments that speak the Responses API themselves (`openai`, `azure`, and an
`openai-compatible` provider with `options.responses_api: true`).
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.base import RelayedStreamDecoder
from llm_gateway.providers.sse import event_fields

DELTAS = (b"response.output_text.delta", b"response.function_call_arguments.delta", b"response.refusal.delta",
          b"response.reasoning_summary_text.delta")
ENDS = (b"response.completed", b"response.incomplete", b"response.failed")


def _count(obj: Any, name: str) -> int:
    value = obj.get(name) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def responses_usage(usage: Any, response: dict[str, Any] | None = None) -> Usage | None:
    """The gateway's Usage from a Responses API `usage` object (and the `service_tier` of its `response`)."""
    if not isinstance(usage, dict):
        return None
    inp, out = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    tier = response.get("service_tier") if response is not None else None
    output = response.get("output") if response is not None else None
    searches = sum(1 for item in output if isinstance(item, dict) and item.get("type") == "web_search_call"
                   ) if isinstance(output, list) else 0
    return Usage(_count(usage, "input_tokens"), _count(usage, "output_tokens"),
                 cached_tokens=_count(inp, "cached_tokens"), cache_write_tokens=_count(inp, "cache_write_tokens"),
                 reasoning_tokens=_count(out, "reasoning_tokens"), web_searches=searches,
                 service_tier=tier if isinstance(tier, str) else "")


def usage_of_body(body: bytes) -> Usage | None:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return responses_usage(obj.get("usage"), obj) if isinstance(obj, dict) else None


class NativeResponsesDecoder(RelayedStreamDecoder):
    """Passes every event through unchanged; notes the usage of the final event and the generated texts."""

    def _event(self, event: bytes) -> bytes:
        _, data = event_fields(event)
        head = data[:60]
        if any(kind in head for kind in DELTAS):
            try:
                delta = orjson.loads(data).get("delta")
            except (orjson.JSONDecodeError, AttributeError):
                delta = None
            if isinstance(delta, str):
                self._texts.append(delta)
        elif any(kind in head for kind in ENDS):
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict) and isinstance(obj.get("response"), dict):
                self.usage = responses_usage(obj["response"].get("usage"), obj["response"]) or self.usage
        return event + b"\n\n"
