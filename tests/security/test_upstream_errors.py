"""Upstream failures tell the client which provider failed, never where it lives: host and port go to the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.conftest import GatewayProcess
from tests.security.raw_upstream import RawUpstream, RawUpstreamThread, Step
from tests.upstream import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstreamThread]:
    servers = RawUpstreamThread()
    yield servers
    servers.stop()


def cut_short(req: object) -> list[Step]:
    return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":", None]


def silent(req: object) -> list[Step]:
    return [30.0]


@pytest.mark.parametrize(("case", "status", "message"), [
    ("refused", 502, "upstream internal-llm unreachable"),
    ("cut-short", 502, "upstream internal-llm closed the connection before the response ended"),
    ("silent", 504, "upstream internal-llm sent no response within 0.5s"),
])
def test_upstream_errors_name_the_provider_not_its_address(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread,
        case: str, status: int, message: str) -> None:
    if case == "refused":
        port = free_port()
    else:
        port = raw.start(RawUpstream(answer=cut_short if case == "cut-short" else silent)).port
    gw = gateway_factory(config={"providers": [
        {"name": "internal-llm", "type": "openai-compatible", "base_url": f"http://127.0.0.1:{port}/v1",
         "models": ["*"], "timeouts": {"first_token": 0.5}}]})
    r = httpx.post(f"{gw.v1}/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == status
    assert r.json()["error"]["message"] == message
    assert "127.0.0.1" not in r.text and str(port) not in r.text
    assert f"127.0.0.1:{port}" in gw.log()  # the operator still learns where
