"""Our option names as other gateways spell them: camelCase keys renamed to ours, durations (`60s`, `1h`) and sizes
(`256MB`) turned into the seconds and megabytes our fields hold, and the nearest valid name for an unknown key.

The walk follows the pydantic schema, so only option names are renamed: the keys of free-form maps (model names,
headers, provider options) are left exactly as written."""

from __future__ import annotations

import difflib
import re
import types
from typing import Any, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

from llm_gateway.config.durations import is_duration, parse_duration, parse_size_mb

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
# names the Go seed's sections accept where our schema has none (config/go_seed.py maps them): suggested too
SEED_NAMES = {"GatewayConfig": ("rateLimit", "logging"), "ServerConfig": ("readTimeout", "writeTimeout", "idleTimeout"),
              "ProviderConfig": ("priority", "timeout"), "CacheConfig": ("maxSize",)}


def snake(name: str) -> str:
    """`maxRetries` -> `max_retries`, `allowed-origins` -> `allowed_origins`."""
    return _CAMEL.sub(r"_\1", name).replace("-", "_").lower()


def _names(model: type[BaseModel]) -> dict[str, str]:
    """Every accepted spelling of the model's options -> the field it sets."""
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        out[name] = name
        if info.alias:
            out[info.alias] = name
        alias = info.validation_alias
        if isinstance(alias, str):
            out[alias] = name
        elif isinstance(alias, AliasChoices):
            out.update({c: name for c in alias.choices if isinstance(c, str)})
    return out


def _members(annotation: Any) -> tuple[Any, ...]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return get_args(annotation)
    return (annotation,)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _takes_float(info: FieldInfo) -> bool:
    return any(m is float for m in _members(info.annotation))


def _target(key: str, value: Any, known: dict[str, str], model: type[BaseModel]) -> str | None:
    if key in known:
        return known[key]
    base = snake(key)
    if base in known:
        return known[base]
    fields = model.model_fields
    if is_duration(value) or isinstance(value, int | float):  # `ttl: 1h` sets ttl_s, `timeout: 30` timeout_s
        for name in (f"{base}_s", f"{base}_seconds"):
            if name in fields and _takes_float(fields[name]):
                return name
    if isinstance(value, str) and parse_size_mb(value) is not None and f"{base}_mb" in fields:
        return f"{base}_mb"
    return None


def suggest(key: str, model: type[BaseModel]) -> str:
    """'did you mean ...' for an unknown key, or the valid names when none is close."""
    fields = list(model.model_fields)
    spelled = {f: f for f in fields}  # `ttl` is near `tll` where `ttl_s` is not
    spelled.update({f.removesuffix(unit): f for f in fields for unit in ("_s", "_mb") if f.endswith(unit)})
    spelled.update({snake(n): n for n in SEED_NAMES.get(model.__name__, ()) if snake(n) not in spelled})
    close = difflib.get_close_matches(snake(key), list(spelled), n=2, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(f) for f in dict.fromkeys(spelled[c] for c in close)) + "?"
    return "valid here: " + ", ".join(fields)


def _coerce(value: Any, info: FieldInfo, name: str) -> Any:
    if isinstance(value, str) and _takes_float(info):
        if name.endswith("_mb"):
            size = parse_size_mb(value)
            if size is not None:
                return size
        if is_duration(value):
            return parse_duration(value)
    return value


def normalize(data: Any, model: type[BaseModel], path: str, hints: dict[str, str]) -> Any:
    """`data` with its option names spelled as `model`'s fields; `hints[path]` says what to write instead of each
    unknown key (pydantic still refuses it; the hint goes with its error)."""
    if not isinstance(data, dict):
        return data
    known = _names(model)
    fields = model.model_fields
    out: dict[Any, Any] = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        name = _target(key, value, known, model) if isinstance(key, str) else None
        if name is None or (name != key and name in data):  # unknown, or given in both spellings: left to refuse
            if isinstance(key, str):
                hints[where] = suggest(key, model)
            out[key] = value
            continue
        info = fields[name]
        value = _coerce(value, info, name)
        out[name] = _descend(value, info.annotation, f"{path}.{name}" if path else name, hints)
    return out


def _descend(value: Any, annotation: Any, path: str, hints: dict[str, str]) -> Any:
    for member in _members(annotation):
        if _is_model(member) and isinstance(value, dict):
            return normalize(value, member, path, hints)
        origin = get_origin(member)
        args = get_args(member)
        if origin is list and isinstance(value, list) and args:
            return [_descend(v, args[0], f"{path}[{i}]", hints) for i, v in enumerate(value)]
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return {k: _descend(v, args[1], f"{path}.{k}", hints) for k, v in value.items()}
    return value
