"""OpenAI embedding requests and responses, for providers whose embedding APIs look different."""

from __future__ import annotations

import base64
import struct
from typing import Any

from llm_gateway.errors import BadRequest
from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.usage_map import openai_usage

SUPPORTED = frozenset({"encoding_format", "dimensions"})


def inputs_of(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise BadRequest("input must be a string or an array of strings for this provider", param="input")


def _encode(vector: list[float], encoding_format: Any) -> Any:
    if encoding_format == "base64":  # what the openai SDK asks for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings_response(vectors: list[list[float]], model: str, body: dict[str, Any],
                        usage: Usage | None) -> dict[str, Any]:
    fmt = body.get("encoding_format")
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)]
    out: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if usage is not None:
        full = openai_usage(usage)
        out["usage"] = {"prompt_tokens": full["prompt_tokens"], "total_tokens": full["total_tokens"]}
    return out
