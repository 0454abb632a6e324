"""The genai-gateway flags with an IPv6 upstream: `--openai-domain ::1` (or `[::1]`) reaches it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from openai import OpenAI
from tests.conftest import GatewayProcess
from tests.upstream import Upstream, UpstreamThread


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")


@pytest.fixture(scope="module")
def upstream6() -> Iterator[Upstream]:
    server = UpstreamThread(host="::1")
    yield server.start()
    server.stop()


@pytest.mark.parametrize("domain", ["::1", "[::1]"])
def test_ipv6_single_upstream(domain: str, upstream6: Upstream,
                              gateway_factory: Callable[..., GatewayProcess]) -> None:
    port = upstream6.url.rsplit(":", 1)[1]
    gw = gateway_factory(["--openai-domain", domain, "--openai-port", port])
    client = OpenAI(base_url=gw.v1, api_key="sk-client", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    assert upstream6.requests[-1].headers.get("Host") == f"[::1]:{port}"
