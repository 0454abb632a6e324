"""The OpenAPI 3.1 description of the admin API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from llm_gateway import __version__

_PAGE: list[dict[str, Any]] = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
    {"name": "after", "in": "query", "description": "the next_cursor of the previous page",
          "schema": {"type": "string"}}]
_ID: list[dict[str, Any]] = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_BUDGET: dict[str, Any] = {"budget_usd": {"type": ["number", "null"], "minimum": 0},
           "budget_period": {"type": "string", "enum": ["daily", "monthly", "total"]}}
_META: dict[str, Any] = {"metadata": {"type": "object"}}
_TIMES: dict[str, Any] = {"created_at": {"type": "integer", "description": "epoch ms"},
                          "updated_at": {"type": "integer"}}

KEY_INPUT: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
    "alias": {"type": "string"}, "user_id": {"type": "string"}, "team_id": {"type": "string"},
    "models": {"type": ["array", "null"], "items": {"type": "string"}, "description": "null: every model"},
    **_BUDGET, "rpm_limit": {"type": ["integer", "null"]}, "tpm_limit": {"type": ["integer", "null"]},
    "expires_at": {"type": ["integer", "null"], "description": "epoch ms"},
    "expires_in_s": {"type": "number"}, **_META, "blocked": {"type": "boolean"},
    "allow_overrides": {"type": ["boolean", "null"], "description": "x-gateway fallbacks, provider, hedge and "
                        "retries; null: as the key's team allows"},
    "allow_passthrough": {"type": ["boolean", "null"], "description": "/v1/* paths the gateway passes through; "
                          "null: as the key's team allows"}}}
KEY: dict[str, Any] = {"type": "object", "properties": {
    "id": {"type": "string"}, "key_prefix": {"type": "string"}, **KEY_INPUT["properties"], **_TIMES,
    "key": {"type": "string", "description": "the secret: only in the answers to create and rotate"}}}
USER_INPUT: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
    "id": {"type": "string"}, "email": {"type": "string"}, "team_id": {"type": "string"}, **_BUDGET,
    "max_keys": {"type": ["integer", "null"]}, **_META}}
USER: dict[str, Any] = {"type": "object", "properties": {**USER_INPUT["properties"], **_TIMES,
                                         "token": {"type": "string", "description": "only on create"}}}
TEAM_INPUT: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, **_BUDGET, **_META,
    "allow_overrides": {"type": "boolean", "default": False},
    "allow_passthrough": {"type": "boolean", "default": False}}}
TEAM: dict[str, Any] = {"type": "object", "properties": {**TEAM_INPUT["properties"], **_TIMES}}
TOTALS: dict[str, Any] = {"type": "object", "properties": {n: {"type": "number"} for n in (
    "total_requests", "total_tokens", "prompt_tokens", "completion_tokens", "total_cost", "cache_hits",
    "cache_misses", "errors")}}
ERROR: dict[str, Any] = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": ["string", "null"]},
    "param": {"type": ["string", "null"]}}}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {status: {"description": "OK", "content": {"application/json": {"schema": schema}}},
            "default": {"description": "an error", "content": {"application/json": {"schema": _ref("Error")}}}}


def _list(item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array",
            "items": _ref(item)}, "has_more": {"type": "boolean"}, "next_cursor": {"type": ["string", "null"]}}}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _crud(name: str, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    collection = {"get": {"tags": [tag], "summary": f"List {tag} (cursor pagination)", "parameters": _PAGE,
                          "responses": _ok(_list(name))},
                  "post": {"tags": [tag], "summary": f"Create a {name.lower()}", "requestBody": _body(
                      f"{name}Input"), "responses": _ok(_ref(name), "201")}}
    item = {"parameters": _ID,
            "get": {"tags": [tag], "summary": f"One {name.lower()}", "responses": _ok(_ref(name))},
            "patch": {"tags": [tag], "summary": f"Change a {name.lower()}", "requestBody": _body(f"{name}Input"),
                      "responses": _ok(_ref(name))},
            "delete": {"tags": [tag], "summary": f"Delete a {name.lower()}", "responses": _ok({"type": "object"})}}
    return collection, item


def spec() -> dict[str, Any]:
    keys, key = _crud("Key", "keys")
    users, user = _crud("User", "users")
    teams, team = _crud("Team", "teams")
    usage_params = [{"name": n, "in": "query", "schema": {"type": "string"}, "description": d} for n, d in (
        ("start", "epoch ms or ISO 8601; default 30 days before end"), ("end", "epoch ms or ISO 8601; default now"),
        ("group_by", "key, user, team, model, provider or day"), ("key_id", "only this key"),
        ("user_id", "only this user"), ("team_id", "only this team"), ("model", "only this model"),
        ("limit", "groups per page"), ("offset", "groups to skip"))]
    action: dict[str, Any] = {"parameters": _ID, "post": {"tags": ["keys"], "responses": _ok(_ref("Key"))}}
    paths: dict[str, Any] = {
        "/api/v1/keys": keys, "/api/v1/keys/{id}": key,
        "/api/v1/keys/{id}/rotate": {**action, "post": {**action["post"], "summary": "New secret, same key"}},
        "/api/v1/keys/{id}/block": {**action, "post": {**action["post"], "summary": "Block a key"}},
        "/api/v1/keys/{id}/unblock": {**action, "post": {**action["post"], "summary": "Unblock a key"}},
        "/api/v1/users": users, "/api/v1/users/{id}": user, "/api/v1/teams": teams, "/api/v1/teams/{id}": team,
        "/api/v1/models": {"get": {"tags": ["models"], "summary": "Served models, deployments and prices",
                                   "responses": _ok({"type": "object"})}},
        "/api/v1/usage": {"get": {"tags": ["usage"], "summary": "Usage totals, optionally grouped",
                                  "parameters": usage_params, "responses": _ok({"type": "object", "properties": {
                                      "start": {"type": "integer"}, "end": {"type": "integer"},
                                      "totals": _ref("Totals"), "group_by": {"type": "string"},
                                      "groups": {"type": "array", "items": _ref("Totals")}}})}},
        "/api/v1/spend": {"get": {"tags": ["usage"], "summary": "Budgets and their spend this period",
                                  "parameters": [{"name": "kind", "in": "query", "schema": {
                                      "type": "string", "enum": ["key", "user", "team"]}}],
                                  "responses": _ok({"type": "object"})}},
        "/api/v1/me/keys": {
            "get": {"tags": ["self-service"], "summary": "Your keys (user token)", "parameters": _PAGE,
                    "security": [{"userToken": []}], "responses": _ok(_list("Key"))},
            "post": {"tags": ["self-service"], "summary": "Create one of your keys (capped per user)",
                     "security": [{"userToken": []}], "requestBody": _body("KeyInput"),
                     "responses": _ok(_ref("Key"), "201")}},
        "/api/v1/me/keys/{id}": {"parameters": _ID, "delete": {
            "tags": ["self-service"], "summary": "Delete one of your keys", "security": [{"userToken": []}],
            "responses": _ok({"type": "object"})}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "llm-gateway admin API", "version": __version__,
                 "description": "Keys, users, teams, usage and spend. Every call needs the master key as "
                                "`Authorization: Bearer`, except /api/v1/me/* (a user's token)."},
        "servers": [{"url": "/"}],
        "security": [{"masterKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"masterKey": {"type": "http", "scheme": "bearer"},
                                "userToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Key": KEY, "KeyInput": KEY_INPUT, "User": USER, "UserInput": USER_INPUT, "Team": TEAM,
                        "TeamInput": TEAM_INPUT, "Totals": TOTALS, "Error": ERROR},
        },
    }
