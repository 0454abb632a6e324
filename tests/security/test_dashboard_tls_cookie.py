"""Under TLS the dashboard's session cookie is `Secure` (as well as HttpOnly and SameSite=Lax), through the real
process serving HTTPS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import GatewayProcess
from tests.security.test_edge_tls_http2 import tls_files, wait_healthy
from tests.upstream import Upstream

MASTER = "mk-dashboard-tls-5e1"


def test_the_session_cookie_is_secure_under_tls(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                                 tmp_path: Path) -> None:
    client_ctx, files = tls_files(tmp_path)
    config = {"server": {"tls": files}, "database": {"url": f"sqlite:///{tmp_path}/tls.db"},
              "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}]}
    gw = gateway_factory(config=config, env={"LLM_GATEWAY_MASTER_KEY": MASTER}, wait=False)
    base = f"https://127.0.0.1:{gw.port}"
    with httpx.Client(verify=client_ctx) as client:
        wait_healthy(gw, client, base)
        login = client.get(f"{base}/ui/login")
        csrf = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert "secure" in login.headers["set-cookie"].lower()
        signed = client.post(f"{base}/ui/login", data={"csrf": csrf, "secret": MASTER})
    assert signed.status_code == 303
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("llm_gateway_ui="))
    attributes = {part.strip().split("=", 1)[0].lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite"} <= attributes and "samesite=lax" in cookie.lower()
