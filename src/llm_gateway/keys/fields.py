"""Validation of key, user and team fields as the admin API and the CLI receive them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llm_gateway.errors import BadRequest
from llm_gateway.keys.model import PERIODS

Check = Callable[[str, Any], Any]


def _text(limit: int) -> Check:
    def check(name: str, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value or len(value) > limit:
            raise BadRequest(f"{name} must be a non-empty string of at most {limit} characters", param=name)
        return value
    return check


def _number(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest(f"{name} must be a number >= 0 or null", param=name)
    return float(value)


def _count(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{name} must be an integer >= 0 or null", param=name)
    return value


def _period(name: str, value: Any) -> Any:
    if value not in PERIODS:
        raise BadRequest(f"{name} must be one of {', '.join(PERIODS)}", param=name)
    return value


def _models(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise BadRequest(f"{name} must be a list of model names (or aliases), or null for all", param=name)
    return sorted(set(value))


def _guardrail_names(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(g, str) and 0 < len(g) <= 100 for g in value):
        raise BadRequest(f"{name} must be a list of guardrail names, or null for none", param=name)
    return list(dict.fromkeys(value))


def _mapping(name: str, value: Any) -> Any:
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a JSON object", param=name)
    return value


def _flag(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", param=name)
    return value


def _optional_flag(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{name} must be true, false or null (null: as the key's team allows)", param=name)
    return value


_ID = _text(64)
KEY_FIELDS: dict[str, Check] = {
    "alias": _text(200), "user_id": _ID, "team_id": _ID, "models": _models, "budget_usd": _number,
    "budget_period": _period, "rpm_limit": _count, "tpm_limit": _count, "expires_at": _count,
    "metadata": _mapping, "blocked": _flag, "allow_overrides": _optional_flag, "allow_passthrough": _optional_flag,
    "guardrails": _guardrail_names,
}
USER_FIELDS: dict[str, Check] = {
    "id": _ID, "email": _text(320), "team_id": _ID, "budget_usd": _number, "budget_period": _period,
    "max_keys": _count, "metadata": _mapping,
}
TEAM_FIELDS: dict[str, Check] = {
    "id": _ID, "name": _text(200), "budget_usd": _number, "budget_period": _period, "metadata": _mapping,
    "allow_overrides": _flag, "allow_passthrough": _flag, "guardrails": _guardrail_names,
}
SELF_SERVICE_KEY_FIELDS = ("alias", "models", "budget_usd", "budget_period", "expires_at", "metadata")


def validate(body: Any, fields: dict[str, Check], *, creating: bool,
             allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The checked subset of `body`; `expires_in_s` becomes `expires_at` (epoch ms) for keys."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    body = dict(body)
    if "expires_in_s" in body and "expires_at" in fields:
        seconds = _number("expires_in_s", body.pop("expires_in_s"))
        body["expires_at"] = None if seconds is None else int((time.time() + seconds) * 1000)
    names = allowed if allowed is not None else tuple(fields)
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)} (known: {', '.join(names)})", param=unknown[0])
    if not creating and "id" in body:
        raise BadRequest("id cannot be changed", param="id")
    return {name: fields[name](name, value) for name, value in body.items()}
