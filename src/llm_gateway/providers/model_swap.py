"""The model name replaced in a client's JSON request, every other byte left as the client wrote it.

When client and provider speak the same wire format, the gateway forwards the client's bytes: re-serialising
would reorder nothing (orjson keeps key order) but could still change numbers, escapes and spacing, and costs
a parse and a dump. Only the top-level `"model"` value changes.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')


def with_model(raw: bytes, model: str, body: dict[str, Any] | None = None) -> bytes:
    """`raw` (a JSON object; `body` is its parsed form when the caller has it) with its top-level model set."""
    if body is None:
        parsed = orjson.loads(raw)
        body = parsed if isinstance(parsed, dict) else {}
    if body.get("model") == model:
        return raw
    new = orjson.dumps(model)
    for match in _MODEL.finditer(raw):
        candidate = raw[:match.start(1) - 1] + new + raw[match.end(1) + 1:]
        try:
            parsed = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        # the match may be a nested "model" (in metadata, a tool schema): only the top-level one will do
        if isinstance(parsed, dict) and parsed.get("model") == model and parsed == {**body, "model": model}:
            return candidate
    return orjson.dumps({**body, "model": model})
