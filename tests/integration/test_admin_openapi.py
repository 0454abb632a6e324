"""The admin API's OpenAPI document: every served cold route is in it, /docs needs nothing from outside, and
schemathesis finds no server error and no response outside the document against the real process."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from tests.conftest import GatewayProcess
from tests.pg import fresh_schema
from tests.upstream import Upstream

from llm_gateway.app import create_app
from llm_gateway.settings import GatewayConfig

MASTER = "mk-openapi-test-77"
# Served on purpose outside the document: the document itself and its page; the dashboard's HTML pages (/ui).
UNDOCUMENTED = {"/openapi.json", "/docs", "/docs/assets"}
UNDOCUMENTED_PREFIX = "/ui"


def test_every_served_cold_route_is_in_the_document(tmp_path: Path) -> None:
    gateway = create_app(GatewayConfig.model_validate({
        "auth": {"master_key": MASTER}, "database": {"url": f"sqlite:///{tmp_path}/a.db"},
        "cache": {"enabled": True}}))
    cold = gateway.edge.cold
    assert cold is not None
    document = cold.openapi()  # type: ignore[attr-defined]
    served: set[tuple[str, str]] = set()
    for route in iter_route_contexts(cold.routes):  # type: ignore[attr-defined]  # included routers, flattened
        path = route.path or ""
        if path in UNDOCUMENTED or path == UNDOCUMENTED_PREFIX or path.startswith(UNDOCUMENTED_PREFIX + "/"):
            continue
        assert isinstance(route.original_route, APIRoute) and route.methods, f"a cold route of another kind: {path}"
        served |= {(path, m.lower()) for m in route.methods}
    documented = {(path, method) for path, item in document["paths"].items() for method in item
                  if method in {"get", "post", "put", "patch", "delete"}}
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    assert {"/api/v1/keys", "/api/v1/me/keys", "/api/v1/providers/status", "/api/v1/cache/clear", "/metrics",
            "/health", "/ready"} <= {p for p, _ in served}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/api/v1/") and method != "parameters":
                assert operation.get("security"), (path, method)  # every admin route says which key it takes
                assert "default" in operation["responses"], (path, method)  # and documents its error shape


def test_docs_page_is_served_with_local_assets(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                               tmp_path: Path) -> None:
    gw = gateway_factory(config={"database": {"url": f"sqlite:///{tmp_path}/a.db"}},
                         env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    page = httpx.get(f"{gw.url}/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        assert httpx.get(f"{gw.url}{asset}").status_code == 200, asset
    assert "/api/v1/keys" in httpx.get(f"{gw.url}/openapi.json").json()["paths"]


@pytest.fixture
def strict_db(tmp_path: Path) -> Iterator[str]:
    """PostgreSQL when it runs (it refuses NUL in text and integers beyond a column's width; SQLite stores
    anything), SQLite otherwise."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        yield f"sqlite:///{tmp_path}/a.db"
        return
    with fresh_schema("test_openapi") as url:
        yield url


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, strict_db: str) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis import checks as st_checks

    gw = gateway_factory(config={"providers": [{"name": "up", "type": "openai-compatible",
                                                "base_url": f"{upstream.url}/v1", "models": ["*"]}],
                                 "database": {"url": strict_db}, "cache": {"enabled": True},
                                 "auth": {"max_keys_per_user": 3}},
                         env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    user_token = httpx.post(f"{gw.url}/api/v1/users", json={"id": "st-user"},
                            headers={"authorization": f"Bearer {MASTER}"}).json()["token"]
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
    wanted = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
              st_checks.response_schema_conformance]
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        token = user_token if operation.path.startswith("/api/v1/me/") else MASTER
        calls += _exercise(operation, token, wanted, failures)
    print(f"schemathesis: {calls} requests")
    assert calls > 1000, calls
    assert failures == [], "\n".join(failures[:10])


def _exercise(operation: Any, token: str, checks: list[Any], failures: list[str]) -> int:
    """Up to 120 generated requests to one operation; each answer checked against the document."""
    from hypothesis import HealthCheck, given, settings

    calls = 0

    @settings(max_examples=120, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers={"authorization": f"Bearer {token}"})
        try:
            case.validate_response(response, checks=checks)
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")

    run()
    return calls
