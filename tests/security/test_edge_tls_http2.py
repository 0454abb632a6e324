"""TLS (`server.tls.cert_file`/`key_file`, a CA made in the test) and HTTP/2 (`server.http2`: by ALPN over TLS, by
prior knowledge in clear) on the real gateway, with httpx as the client; a streamed completion over each."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trustme
from tests.conftest import GatewayProcess
from tests.security.edge_wire import MASTER_KEY, edge_config, exchange, statuses
from tests.upstream import Upstream

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "up/m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def tls_files(tmp_path: Path) -> tuple[ssl.SSLContext, dict[str, str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return client_ctx, {"cert_file": str(cert_file), "key_file": str(key_file)}


def wait_healthy(gw: GatewayProcess, client: httpx.Client, base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert gw.proc.poll() is None, gw.log()
        try:
            if client.get(f"{base}/health").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"the gateway did not answer on {base}:\n{gw.log()}")


def streamed_text(client: httpx.Client, base: str) -> tuple[str, str]:
    with client.stream("POST", f"{base}/v1/chat/completions", json=CHAT, headers=AUTH) as resp:
        assert resp.status_code == 200, resp.read()
        text = "".join(resp.iter_text())
        return resp.http_version, text


def start(factory: Callable[..., GatewayProcess], upstream: Upstream, **server: Any) -> GatewayProcess:
    return factory(config=edge_config(upstream, **server), wait=False)


def test_tls_serves_requests_and_streams(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                         tmp_path: Path) -> None:
    client_ctx, files = tls_files(tmp_path)
    gw = start(gateway_factory, upstream, tls=files)
    base = f"https://127.0.0.1:{gw.port}"
    with httpx.Client(verify=client_ctx, timeout=10) as client:
        wait_healthy(gw, client, base)
        version, text = streamed_text(client, base)
    assert version == "HTTP/1.1" and "data: [DONE]" in text and "quick" in text
    out, _ = exchange(gw.port, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")  # plain HTTP on the TLS port
    assert statuses(out) == [], out[:200]
    with httpx.Client(timeout=5) as untrusting:  # the system's CAs do not know the test's CA
        try:
            untrusting.get(f"{base}/health")
        except httpx.ConnectError as exc:
            assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
        else:
            raise AssertionError("a certificate from an unknown CA was accepted")


def test_http2_by_alpn_over_tls(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                tmp_path: Path) -> None:
    client_ctx, files = tls_files(tmp_path)
    gw = start(gateway_factory, upstream, tls=files, http2=True)
    base = f"https://127.0.0.1:{gw.port}"
    with httpx.Client(verify=client_ctx, http2=True, timeout=10) as client:
        wait_healthy(gw, client, base)
        version, text = streamed_text(client, base)
        assert version == "HTTP/2" and "data: [DONE]" in text and "quick" in text
        models = client.get(f"{base}/v1/models", headers=AUTH)
        assert models.http_version == "HTTP/2" and models.status_code == 200
    with httpx.Client(verify=client_ctx, timeout=10) as http1:  # HTTP/1.1 clients are still served
        assert http1.get(f"{base}/health").http_version == "HTTP/1.1"


def test_http2_by_prior_knowledge_in_clear(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    gw = start(gateway_factory, upstream, http2=True)
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        wait_healthy(gw, client, gw.url)
        version, text = streamed_text(client, gw.url)
    assert version == "HTTP/2" and "data: [DONE]" in text


def test_http2_is_off_by_default(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    gw = gateway_factory(config=edge_config(upstream))
    with httpx.Client(http1=False, http2=True, timeout=3) as client:
        try:
            client.get(f"{gw.url}/health")
        except httpx.HTTPError:
            pass
        else:
            raise AssertionError("HTTP/2 was spoken with server.http2 off")
