"""Pass-through paths: `..` and its encoded forms never reach the upstream with the provider's key."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from tests.conftest import GatewayProcess
from tests.security.raw_upstream import RawUpstream, RawUpstreamThread, response

CLIMBING = ["/v1/../admin", "/v1/files/../../admin", "/v1/%2e%2e/admin", "/v1/%2E%2e/admin", "/v1/.%2e/admin",
            "/v1/files%2f..%2fadmin", "/v1/files%2F%2E%2E%2Fadmin", "/v1/files/..%5cadmin", "/v1/files\\..\\admin",
            "/v1/files/%252e%252e/admin", "/v1/./files", "/v1/files/%2e/x"]


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstreamThread]:
    servers = RawUpstreamThread()
    yield servers
    servers.stop()


def get(port: int, target: str) -> bytes:
    """A GET with the target exactly as given (HTTP clients would resolve the dot segments themselves)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
        return sock.makefile("rb").read()


def test_dot_segments_and_encoded_separators_are_refused_before_anything_goes_upstream(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread) -> None:
    up = raw.start(RawUpstream(answer=lambda req: [response(b'{"object":"list","data":[]}')]))
    gw = gateway_factory(config={"providers": [{"name": "p", "type": "openai-compatible", "base_url": f"{up.url}/v1",
                                                "api_key": "provider-secret", "models": ["*"],
                                                "options": {"passthrough": True}}]})
    for target in CLIMBING:
        answer = get(gw.port, target)
        assert answer.startswith(b"HTTP/1.1 400"), (target, answer[:200])
        assert b'"code":"invalid_path"' in answer, (target, answer)
    time.sleep(0.2)
    assert up.requests == [], [q.line for q in up.requests]

    # what stays: a plain path, normalised (no empty segments), with the provider's key
    answer = get(gw.port, "/v1/files//file-abc?purpose=x")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert [q.line for q in up.requests] == [b"GET /v1/files/file-abc?purpose=x HTTP/1.1"]
    assert up.requests[0].header("authorization") == "Bearer provider-secret"
