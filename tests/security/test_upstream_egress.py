"""Egress: through an HTTP(S) proxy (environment or a provider's `proxy`), to a TLS upstream that trusts only its
own CA and requires a client certificate (`ca_file`, `client_cert`, `client_key`)."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from tests.conftest import GatewayProcess
from tests.security.forward_proxy import ForwardProxy
from tests.security.raw_upstream import RawRequest, RawUpstream, RawUpstreamThread, Step, chat_json, response

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
EVENT = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
         b'"delta":{"content":"tunnelled"},"finish_reason":null}]}\n\n')


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstreamThread]:
    servers = RawUpstreamThread()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def forward_proxy(raw: RawUpstreamThread) -> ForwardProxy:
    proxy = ForwardProxy()
    raw._servers.append(raw._loop.run(proxy.serve()))
    return proxy


def answer(req: RawRequest) -> list[Step]:
    if b'"stream":true' in req.body:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        return [head, EVENT, 0.05, b"data: [DONE]\n\n", None]
    return [response(chat_json("through the proxy"))]


def provider(url: str, **extra: Any) -> dict[str, Any]:
    return {"providers": [{"name": "p", "type": "openai-compatible", "base_url": f"{url}/v1", "models": ["*"],
                           "api_key": "provider-secret", "timeouts": {"first_token": 5}, **extra}]}


def test_http_proxy_from_the_environment_and_no_proxy(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread, forward_proxy: ForwardProxy) -> None:
    up = raw.start(RawUpstream(answer=answer))
    with_login = forward_proxy.url.replace("http://", "http://gw:pr%40xy-secret@")
    gw = gateway_factory(config=provider(up.url), env={"HTTP_PROXY": with_login, "NO_PROXY": "example.com"})
    r = httpx.post(f"{gw.v1}/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "through the proxy"
    assert f"POST {up.url}/v1/chat/completions HTTP/1.1" in forward_proxy.seen  # absolute-URI form
    assert up.requests[-1].header("authorization") == "Bearer provider-secret"
    login = base64.b64encode(b"gw:pr@xy-secret")
    assert b"\r\nProxy-Authorization: Basic %s\r\n" % login in forward_proxy.heads[-1]
    assert "xy-secret" not in gw.log()

    seen = len(forward_proxy.seen)
    direct = gateway_factory(config=provider(up.url), env={"http_proxy": forward_proxy.url,
                                                           "no_proxy": "localhost,127.0.0.1"})
    assert httpx.post(f"{direct.v1}/chat/completions", json=CHAT, timeout=10).status_code == 200
    assert len(forward_proxy.seen) == seen  # NO_PROXY named the host: connected directly


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA made for the test; a server certificate for 127.0.0.1 and a client certificate, both from it."""
    ca = trustme.CA()
    out = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("gateway.client.test")
    paths = {"ca": out / "ca.pem", "cert": out / "client-cert.pem", "key": out / "client-key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no handshake
    return {"context": context, **{k: str(v) for k, v in paths.items()}}


def test_https_through_a_connect_proxy_with_the_providers_ca_and_client_certificate(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread, forward_proxy: ForwardProxy,
        pki: dict[str, Any]) -> None:
    up = raw.start(RawUpstream(tls=pki["context"], answer=answer))
    gw = gateway_factory(config=provider(up.url, proxy=forward_proxy.url, ca_file=pki["ca"],
                                         client_cert=pki["cert"], client_key=pki["key"]))
    r = httpx.post(f"{gw.v1}/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 200, r.text
    assert f"CONNECT 127.0.0.1:{up.port} HTTP/1.1" in forward_proxy.seen
    assert ("DNS", "gateway.client.test") in up.peer_certs[-1]["subjectAltName"]  # it presented its certificate
    assert up.requests[-1].header("authorization") == "Bearer provider-secret"

    with httpx.stream("POST", f"{gw.v1}/chat/completions", json={**CHAT, "stream": True}, timeout=10) as s:
        text = b"".join(s.iter_bytes()).decode()
    assert '"tunnelled"' in text and text.rstrip().endswith("data: [DONE]") and '"error"' not in text


def test_without_the_client_certificate_the_upstream_is_unreachable(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread, pki: dict[str, Any],
        tmp_path: Path) -> None:
    up = raw.start(RawUpstream(tls=pki["context"], answer=answer))
    gw = gateway_factory(config=provider(up.url, ca_file=pki["ca"]))
    r = httpx.post(f"{gw.v1}/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 502
    assert r.json()["error"]["message"] in ("upstream p unreachable", "upstream p broke the connection")
    assert str(up.port) not in r.text
    assert up.requests == []
