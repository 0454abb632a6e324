"""Gateway errors and their OpenAI-shaped wire form."""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    """An error that reaches the client as `{"error": {message, type, code, param}}` with a status."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}
        )


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


# What translating a request between wire formats raises on a field of a type or shape the format does not take
# (`stop: 5`, `tool_calls: [5]`, a text block whose text is a number): the client's fault, a 400 (`untranslatable`).
UNTRANSLATABLE = (TypeError, AttributeError, KeyError, IndexError, ValueError)


def untranslatable(api: str, model: object = None) -> BadRequest:
    """The 400 for a request whose translation (Anthropic/Responses ingress, a provider adapter) hit UNTRANSLATABLE."""
    target = f" for model {model!r}" if isinstance(model, str) else ""
    return BadRequest(f"the request could not be translated{target}: a field has a value of the wrong type or shape "
                      f"(see the {api} API reference)")


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamUnavailable(GatewayError):
    """The upstream could not be reached or broke the connection."""

    status = 502
    type = "upstream_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "service_unavailable"


class UpstreamHTTPError(GatewayError):
    """The upstream answered with an error status; `raw` keeps its body for pass-through."""

    def __init__(self, status: int, message: str, raw: bytes, *, type: str = "upstream_error",
                 code: str | None = None, headers: dict[str, str] | None = None, upstream_status: int = 0) -> None:
        super().__init__(message, status=status, type=type, code=code, headers=headers)
        self.raw = raw
        # the status the provider answered with, when the client's status differs (e.g. 529 -> 503)
        self.upstream_status = upstream_status or status

    def body(self) -> bytes:
        return self.raw


def upstream_error_body(status: int, raw: bytes) -> tuple[bytes, str, str | None]:
    """Keep an upstream error body when it is already OpenAI-shaped; wrap it otherwise.

    Returns the body to send, the message and the error type.
    """
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        err = parsed["error"]
        message = str(err.get("message") or f"upstream returned HTTP {status}")
        return raw, message, str(err.get("type") or "upstream_error")
    text = raw.decode("utf-8", "replace").strip()[:2000] if raw else ""
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        text = parsed["error"]
    elif isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        text = parsed["message"]
    message = f"upstream returned HTTP {status}" + (f": {text}" if text else "")
    etype = "invalid_request_error" if 400 <= status < 500 and status != 429 else "upstream_error"
    if status == 429:
        etype = "rate_limit_error"
    body = orjson.dumps({"error": {"message": message, "type": etype, "code": None, "param": None}})
    return body, message, etype
