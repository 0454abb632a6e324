"""Provider errors as OpenAI-shaped gateway errors: each adapter classifies, this module picks status and code."""

from __future__ import annotations

import orjson

from llm_gateway.errors import GatewayError, UpstreamHTTPError

# kind -> (status the client gets, OpenAI error type, OpenAI error code)
KINDS: dict[str, tuple[int, str, str | None]] = {
    "invalid": (400, "invalid_request_error", None),
    "context_length": (400, "invalid_request_error", "context_length_exceeded"),
    "content_filter": (400, "invalid_request_error", "content_filter"),
    "auth": (401, "authentication_error", "invalid_api_key"),
    "permission": (403, "permission_error", None),
    "not_found": (404, "invalid_request_error", "model_not_found"),
    "too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit": (429, "rate_limit_error", "rate_limit_exceeded"),
    "server": (502, "upstream_error", "upstream_error"),
    "overloaded": (503, "api_error", "service_unavailable"),
    "timeout": (504, "upstream_error", "upstream_timeout"),
}

CONTEXT_LENGTH_HINTS = ("prompt is too long", "context length", "context window", "too many tokens",
                        "input is too long", "too many input tokens", "maximum context",
                        "exceeds the maximum number of tokens", "input token count")


def kind_of_status(status: int, message: str = "") -> str:
    """The error kind an HTTP status (and message) suggests when the provider's own type says nothing more."""
    low = message.lower()
    if status == 400 and any(h in low for h in CONTEXT_LENGTH_HINTS):
        return "context_length"
    if status in (401,):
        return "auth"
    if status == 403:
        return "permission"
    if status == 404:
        return "not_found"
    if status == 413:
        return "too_large"
    if status == 429:
        return "rate_limit"
    if status in (503, 529):
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if 400 <= status < 500:
        return "invalid"
    return "server"


def mapped_error(kind: str, message: str, provider: str, headers: dict[str, str],
                 upstream_status: int = 0) -> GatewayError:
    status, etype, code = KINDS.get(kind, KINDS["server"])
    text = f"{provider}: {message}" if message else f"{provider}: upstream error"
    raw = orjson.dumps({"error": {"message": text, "type": etype, "code": code, "param": None}})
    extra = {k: v for k, v in headers.items() if k == "retry-after"}
    return UpstreamHTTPError(status, text, raw, type=etype, code=code, headers=extra,
                             upstream_status=upstream_status)
