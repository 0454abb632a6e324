"""Upstream requests checked against each provider SDK's own request types, strictly (unknown keys refused).

- Anthropic: the `anthropic` SDK's `MessageCreateParams` TypedDicts, walked recursively (pydantic would check
  their `Iterable` fields lazily, that is never).
- Gemini: `google-genai`'s pydantic models (camelCase aliases, `extra="forbid"`) for each part of the REST body.
- Bedrock: botocore's service model for bedrock-runtime `Converse`, with its own parameter validator.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, NotRequired, Required

import botocore.session
from anthropic.types import message_create_params
from botocore.validate import ParamValidator
from google.genai import types as genai
from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import is_typeddict

# Sampling parameters the Messages API still documents but this SDK's TypedDicts no longer list.
ANTHROPIC_LEGACY_KEYS = {"temperature": float, "top_p": float, "top_k": int}
GEMINI_BODY: dict[str, Any] = {
    "contents": list[genai.Content], "systemInstruction": genai.Content, "tools": list[genai.Tool],
    "toolConfig": genai.ToolConfig, "generationConfig": genai.GenerationConfig,
    "safetySettings": list[genai.SafetySetting], "cachedContent": str,
}
_CONVERSE = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("Converse")


class Mismatch(AssertionError):
    pass


def check_anthropic(body: dict[str, Any]) -> None:
    """A Messages API request body, as the anthropic SDK types it."""
    params = dict(body)
    for key, kind in ANTHROPIC_LEGACY_KEYS.items():
        if key in params:
            value = params.pop(key)
            if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
                raise Mismatch(f"$.{key}: {value!r} is not a {kind.__name__}")
    tp = (message_create_params.MessageCreateParamsStreaming if body.get("stream")
          else message_create_params.MessageCreateParamsNonStreaming)
    _check(params, tp, "$")


def check_gemini(body: dict[str, Any]) -> None:
    """A generateContent / streamGenerateContent REST body, part by part, as google-genai types it."""
    unknown = set(body) - set(GEMINI_BODY)
    if unknown:
        raise Mismatch(f"unknown top-level fields {sorted(unknown)}")
    for key, value in body.items():
        try:
            TypeAdapter(GEMINI_BODY[key]).validate_python(value)
        except ValidationError as exc:
            raise Mismatch(f"$.{key}: {exc}") from None


def check_bedrock(body: dict[str, Any], model_id: str) -> None:
    """A Converse / ConverseStream body (the model id travels in the path), as botocore's shapes say."""
    report = ParamValidator().validate({**body, "modelId": model_id}, _CONVERSE.input_shape)
    if report.has_errors():
        raise Mismatch(report.generate_report())
    _check_enums(body, _CONVERSE.input_shape, "$")  # botocore's validator leaves enums to the service


def _check_enums(value: Any, shape: Any, path: str) -> None:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                _check_enums(item, shape.members[key], f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            _check_enums(item, shape.member, f"{path}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            _check_enums(item, shape.value, f"{path}.{key}")
    elif kind == "string" and getattr(shape, "enum", None) and value not in shape.enum:
        raise Mismatch(f"{path}: {value!r} is not one of {shape.enum}")


def _check(value: Any, tp: Any, path: str) -> None:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return
    if origin in (Required, NotRequired, typing.Annotated):
        _check(value, args[0], path)
    elif is_typeddict(tp):
        _check_typeddict(value, tp, path)
    elif origin in (typing.Union, types.UnionType):
        _check_union(value, args, path)
    elif origin is typing.Literal:
        if value not in args:
            raise Mismatch(f"{path}: {value!r} is not one of {args}")
    elif origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        if not isinstance(value, list):
            raise Mismatch(f"{path}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check(item, args[0] if args else Any, f"{path}[{i}]")
    elif origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise Mismatch(f"{path}: expected an object, got {type(value).__name__}")
        for key, item in value.items():
            _check(item, args[1] if len(args) == 2 else Any, f"{path}.{key}")
    else:
        _check_plain(value, tp, path)


def _check_typeddict(value: Any, tp: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise Mismatch(f"{path}: expected an object ({tp.__name__}), got {type(value).__name__}")
    hints = typing.get_type_hints(tp, include_extras=True)
    unknown = set(value) - set(hints)
    if unknown:
        raise Mismatch(f"{path}: {tp.__name__} has no field(s) {sorted(unknown)}")
    required = set(tp.__required_keys__) | {k for k, h in hints.items() if typing.get_origin(h) is Required}
    missing = required - set(value)
    if missing:
        raise Mismatch(f"{path}: {tp.__name__} needs {sorted(missing)}")
    for key, item in value.items():
        _check(item, hints[key], f"{path}.{key}")


def _check_union(value: Any, options: tuple[Any, ...], path: str) -> None:
    errors = []
    for option in options:
        try:
            _check(value, option, path)
            return
        except Mismatch as exc:
            errors.append(str(exc))
    raise Mismatch(" / ".join(errors))


def _check_plain(value: Any, tp: Any, path: str) -> None:
    if tp is type(None):
        ok = value is None
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        ok = isinstance(value, tp)  # the SDK's response objects, which a client may pass back: not a JSON body
    else:
        try:  # file inputs and other client-side conveniences
            ok = isinstance(value, typing.get_origin(tp) or tp)
        except TypeError:
            ok = True
    if not ok:
        raise Mismatch(f"{path}: {value!r} is not a {getattr(tp, '__name__', tp)}")
