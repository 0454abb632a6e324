"""The models a pass-through request's body names, however it is encoded, so that a key's `models` decide on them.

The body goes upstream as it came, and upstreams find a `model` in more than a body labelled
`application/json`: one with no content type (the gateway then sends it as `application/json`), `Application/JSON`,
`text/plain` read as JSON, a form, a multipart field (`/v1/audio/transcriptions`, `/v1/images/edits`). Every
reading is taken: a body that is JSON and a form at once names the models of both.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import orjson
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from llm_gateway.errors import BadRequest

_MAX_MODEL_BYTES = 1024  # a `model` field longer than this names no model anyone serves


def _param(name: str) -> re.Pattern[str]:
    return re.compile(rf";\s*{name}\*?\s*=", re.IGNORECASE)


# A parameter given twice (`boundary`, or a part's `name`, `name*` included: RFC 7578 forbids that form, yet some
# parsers read it) is read as the first by some parsers, the last by others, or ignored: the gateway and the
# upstream could then see different fields.
_BOUNDARY, _NAME = _param("boundary"), _param("name")
_EXTENDED_NAME = re.compile(r";\s*name\*", re.IGNORECASE)


def named_models(content_type: str, body: bytes) -> set[str]:
    """Every model name the body gives, read as JSON, as a form and as multipart (by its content type)."""
    media, params = parse_options_header(content_type)
    found: set[str] = set()
    if media == b"multipart/form-data":
        found.update(_multipart(content_type, params, body))
    elif media == b"application/x-www-form-urlencoded":
        text = body.decode("latin-1").replace(";", "&")  # some servers split a form at `;` too
        found.update(v for k, v in parse_qsl(text, keep_blank_values=True) if k == "model")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return found
    if isinstance(parsed, dict) and "model" in parsed:
        model = parsed["model"]
        if not isinstance(model, str):
            raise BadRequest("model must be a string", param="model", code="invalid_model")
        found.add(model)
    return found


def _multipart(content_type: str, params: dict[bytes, bytes], body: bytes) -> list[str]:
    boundary = next((v for k, v in params.items() if k.lower() == b"boundary"), None)
    if not boundary or len(_BOUNDARY.findall(content_type)) > 1:
        raise BadRequest("the multipart body needs exactly one boundary", code="invalid_body")
    models: list[str] = []
    part = _Part()

    def header_field(data: bytes, start: int, end: int) -> None:
        part.field += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        part.value += data[start:end]

    def header_end() -> None:
        if part.field.strip().lower() == b"content-disposition":
            disposition = part.value.decode("latin-1")
            if len(_NAME.findall(disposition)) > 1 or _EXTENDED_NAME.search(disposition):
                raise BadRequest("a multipart part must name its field once, as name=", code="invalid_body")
            _, options = parse_options_header(disposition)
            part.is_model = any(k.lower() == b"name" and v == b"model" for k, v in options.items())
        part.field = part.value = b""

    def data(chunk: bytes, start: int, end: int) -> None:
        if part.is_model:
            part.data += chunk[start:end]
            if len(part.data) > _MAX_MODEL_BYTES:
                raise BadRequest("the multipart field `model` is too long", param="model", code="invalid_model")

    def part_end() -> None:
        if part.is_model:
            models.append(part.data.decode("utf-8", "replace"))
        part.reset()

    try:  # the parser refuses a boundary longer than it takes (256 bytes) as it starts
        parser = MultipartParser(boundary, {"on_header_field": header_field, "on_header_value": header_value,
                                            "on_header_end": header_end, "on_part_data": data,
                                            "on_part_end": part_end})
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError):
        raise BadRequest("the multipart body could not be read", code="invalid_body") from None
    return models


class _Part:
    """The part being read: its header so far, and its data when it is the `model` field."""

    __slots__ = ("data", "field", "is_model", "value")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.field = self.value = self.data = b""
        self.is_model = False
