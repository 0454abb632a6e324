"""The `x-gateway` request extension: a body field (stripped before forwarding), an `x-gateway` header holding the
same JSON object, and `x-gateway-*` headers, one option each."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import BadRequest

BODY_FIELD = "x-gateway"
JSON_HEADER = "x-gateway"
HEADERS = ("x-gateway-cache", "x-gateway-timeout", "x-gateway-provider", "x-gateway-metadata",
           "x-gateway-fallbacks", "x-gateway-retries", "x-gateway-hedge")
KNOWN = ("cache", "timeout", "provider", "metadata", "fallbacks", "retries", "hedge")
PHASES = ("connect", "first_token", "idle", "total")


class RequestOptions:
    """Per-request routing options; the body field wins over the `x-gateway` header, which wins over an
    `x-gateway-<name>` header.

    `cache` and `metadata` are carried for the cache and the ledger; `extra` keeps unknown keys of the body
    field for other parts to read.
    """

    __slots__ = ("cache", "extra", "fallbacks", "hedge", "metadata", "phases", "provider", "retries", "stripped",
                 "timeout")

    def __init__(self) -> None:
        self.cache: Any = None
        self.timeout: float | None = None  # seconds for the whole request, retries and fallbacks included
        self.phases: dict[str, float] = {}  # per-attempt caps: connect, first_token, idle, total
        self.provider: str | None = None
        self.metadata: dict[str, Any] | None = None
        self.fallbacks: list[str] | None = None
        self.retries: int | None = None
        self.hedge: float | bool | None = None  # False: never; True: as configured; seconds: hedge after them
        self.stripped = False  # the body had the field: the client's raw bytes must not be forwarded
        self.extra: dict[str, Any] = {}


def _bad(name: str, why: str) -> BadRequest:
    return BadRequest(f"x-gateway {name}: {why}", param=f"x-gateway.{name}", code="invalid_gateway_option")


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _bad(name, "must be a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise _bad(name, f"must be a number above {low:g} and at most {high:g}")
    return float(value)


def _set(opts: RequestOptions, name: str, value: Any, from_header: bool) -> None:
    if name == "timeout" and isinstance(value, dict) and not from_header:
        for phase, seconds in value.items():
            if phase not in PHASES:
                raise _bad(name, f"unknown timeout {phase!r} (known: {', '.join(PHASES)})")
            opts.phases[phase] = _number(name, seconds, 0, 86400)
    elif name == "timeout":
        opts.timeout = _number(name, value, 0, 86400)
    elif name == "retries":
        retries = _number(name, value, -1, 10)
        if retries != int(retries):
            raise _bad(name, "must be a whole number")
        opts.retries = int(retries)
    elif name == "provider":
        if not isinstance(value, str) or not value:
            raise _bad(name, "must be a provider name")
        opts.provider = value
    elif name == "fallbacks":
        if from_header and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(name, "must be a list of model names")
        opts.fallbacks = value
    elif name == "metadata":
        if from_header and isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise _bad(name, "the header must hold a JSON object") from None
        if not isinstance(value, dict):
            raise _bad(name, "must be an object")
        try:  # written into the ledger row as JSON: orjson writes 254 levels (a header's JSON may have 1,024)
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            raise _bad(name, "is nested too deeply") from None
        opts.metadata = value
    elif name == "hedge":
        _set_hedge(opts, value)
    elif name == "cache":
        opts.cache = value


def _set_hedge(opts: RequestOptions, value: Any) -> None:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    opts.hedge = value if isinstance(value, bool) else _number("hedge", value, 0, 600)


def parse_options(headers: dict[str, str], body: dict[str, Any]) -> RequestOptions | None:
    """The request's options, or None when it has none (the common case, kept cheap)."""
    has_field = BODY_FIELD in body
    field = body.pop(BODY_FIELD) if has_field else None
    found = [h for h in HEADERS if h in headers]
    has_json_header = JSON_HEADER in headers
    if not has_field and not found and not has_json_header:
        return None
    opts = RequestOptions()
    for header in found:
        _set(opts, header[len("x-gateway-"):], headers[header], True)
    if has_json_header:
        try:
            _set_all(opts, orjson.loads(headers[JSON_HEADER]), JSON_HEADER)
        except orjson.JSONDecodeError:
            raise BadRequest("the x-gateway header must hold a JSON object", param="x-gateway",
                             code="invalid_gateway_option") from None
    if has_field:
        opts.stripped = True
        _set_all(opts, field, "the x-gateway field")
    return opts


def _set_all(opts: RequestOptions, given: Any, where: str) -> None:
    if not isinstance(given, dict):
        raise BadRequest(f"{where} must be an object", param="x-gateway", code="invalid_gateway_option")
    for name, value in given.items():
        if name in KNOWN:
            _set(opts, name, value, False)
        else:
            opts.extra[name] = value
