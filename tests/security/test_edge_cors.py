"""CORS on the real gateway (`server.cors`): off by default; when on, preflights on /v1/* and /api/v1/* are answered
for the allowed origins only, and answers (also streamed ones) carry the allowing headers."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from tests.conftest import GatewayProcess
from tests.security.edge_wire import MASTER_KEY, edge_config
from tests.upstream import Upstream

APP = "http://app.example:3000"
PATHS = ["/v1/chat/completions", "/v1/messages", "/api/v1/keys"]
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}]}


def preflight(gw: GatewayProcess, path: str, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(f"{gw.url}{path}", headers={
        "origin": origin, "access-control-request-method": method,
        "access-control-request-headers": "authorization, content-type"})


@pytest.fixture
def cors_gateway(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> GatewayProcess:
    return gateway_factory(config=edge_config(upstream, cors={"enabled": True, "allowed_origins": [APP]}))


def test_cors_is_off_by_default(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    gw = gateway_factory(config=edge_config(upstream))
    for path in PATHS:
        resp = preflight(gw, path, APP)
        assert resp.status_code == 405, (path, resp.status_code)
        assert not any(name.startswith("access-control-") for name in resp.headers), resp.headers
    answer = httpx.post(f"{gw.v1}/chat/completions", json=CHAT, headers={**AUTH, "origin": APP})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize("path", PATHS)
def test_a_preflight_from_an_allowed_origin_is_answered(cors_gateway: GatewayProcess, path: str) -> None:
    resp = preflight(cors_gateway, path, APP)
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == APP
    assert "POST" in resp.headers["access-control-allow-methods"]
    allowed = resp.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert resp.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in resp.headers  # allow_credentials is off by default


@pytest.mark.parametrize("path", PATHS)
def test_a_preflight_from_another_origin_is_refused(cors_gateway: GatewayProcess, path: str) -> None:
    resp = preflight(cors_gateway, path, "http://evil.example")
    assert resp.status_code == 400
    assert "access-control-allow-origin" not in resp.headers


def test_a_preflight_for_a_header_not_allowed_is_refused(cors_gateway: GatewayProcess) -> None:
    resp = httpx.options(f"{cors_gateway.v1}/chat/completions", headers={
        "origin": APP, "access-control-request-method": "POST", "access-control-request-headers": "x-secret"})
    assert resp.status_code == 400


def test_answers_carry_the_allowing_headers_for_allowed_origins_only(cors_gateway: GatewayProcess) -> None:
    allowed = httpx.post(f"{cors_gateway.v1}/chat/completions", json=CHAT, headers={**AUTH, "origin": APP})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    with httpx.stream("POST", f"{cors_gateway.v1}/chat/completions", json={**CHAT, "stream": True},
                      headers={**AUTH, "origin": APP}) as streamed:
        assert streamed.headers["access-control-allow-origin"] == APP
        assert "data: [DONE]" in streamed.read().decode()
    other = httpx.post(f"{cors_gateway.v1}/chat/completions", json=CHAT, headers={**AUTH, "origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = httpx.post(f"{cors_gateway.v1}/chat/completions", json=CHAT, headers={"origin": APP})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP  # readable errors


EVIL = "https://evil.example"


def keyless_config(upstream: Upstream, **server: object) -> dict[str, object]:
    config = edge_config(upstream, **server)
    del config["auth"]  # no master key: anyone who reaches the gateway may call it (the genai-gateway mode)
    return config


def test_a_keyless_gateway_refuses_what_a_page_on_another_site_makes_a_browser_send(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    """A page can make its visitor's browser POST text/plain or a form to any address without a preflight. To a
    keyless gateway on that visitor's machine or network, that would be a call paid with the provider's key."""
    gw = gateway_factory(config=keyless_config(upstream))
    body = json.dumps(CHAT)
    before = len(upstream.requests)
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        r = httpx.post(f"{gw.v1}/chat/completions", content=body, headers={"content-type": ctype, "origin": EVIL})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin_refused", (ctype, r.text)
    message = json.dumps({"model": "up/m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    r = httpx.post(f"{gw.url}/v1/messages", content=message, headers={"origin": "null", "content-type": "text/plain"})
    assert r.status_code == 403, r.text
    assert len(upstream.requests) == before  # nothing went upstream
    # programs send no Origin: as before, whatever the content type says
    r = httpx.post(f"{gw.v1}/chat/completions", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    # with CORS on, the origins it allows may call; others still may not
    open_to_app = gateway_factory(config=keyless_config(upstream, cors={"enabled": True, "allowed_origins": [APP]}))
    assert httpx.post(f"{open_to_app.v1}/chat/completions", json=CHAT, headers={"origin": APP}).status_code == 200
    assert httpx.post(f"{open_to_app.v1}/chat/completions", json=CHAT, headers={"origin": EVIL}).status_code == 403
