"""CR/LF injection on the way out: a client-chosen model name must not write a second upstream request."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from tests.conftest import GatewayProcess
from tests.security.raw_upstream import RawUpstream, RawUpstreamThread, gemini_json, response

from llm_gateway.errors import BadRequest
from llm_gateway.providers.http import HttpClient
from llm_gateway.providers.wire import Origin, PreparedRequest, Timeouts

SRC = Path(__file__).resolve().parents[2] / "src" / "llm_gateway"
# The smuggled request takes the rest of the gateway's head (its provider key among it) as its own headers.
SMUGGLED = "x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET /steal?"


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstreamThread]:
    servers = RawUpstreamThread()
    yield servers
    servers.stop()


def post_status(port: int, body: dict[str, object]) -> bytes:
    """POST a chat request over a raw socket and return the status line (the server side's response headers
    are another test's business)."""
    data = orjson.dumps(body)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(data), data))
        return sock.makefile("rb").readline()


def settle(upstream: RawUpstream, at_least: int = 1) -> None:
    """Wait until the upstream saw `at_least` requests, then a little longer for any smuggled one."""
    deadline = time.monotonic() + 5
    while len(upstream.requests) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)


@pytest.mark.parametrize(("ptype", "secret", "answer"), [
    ("gemini", "x-goog-api-key", gemini_json()),
    ("azure", "api-key", b'{"id":"c","object":"chat.completion","choices":[],"model":"m"}'),
])
def test_a_model_name_with_cr_lf_stays_inside_one_request_line(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread,
        ptype: str, secret: str, answer: bytes) -> None:
    up = raw.start(RawUpstream(answer=lambda req: [response(answer)]))
    gw = gateway_factory(config={"providers": [{"name": "p", "type": ptype, "base_url": up.url,
                                                "api_key": "provider-secret", "models": ["*"]}]})
    status = post_status(gw.port, {"model": f"p/{SMUGGLED}", "messages": [{"role": "user", "content": "hi"}]})
    settle(up)
    assert status.startswith(b"HTTP/1.1 200"), status
    assert len(up.requests) == 1, [q.line for q in up.requests]
    line = up.requests[0].line
    assert b"/steal" not in line.split(b"?")[0] and line.endswith(b" HTTP/1.1")
    assert b"x%20HTTP%2F1.1%0D%0AHost%3A%20a%0D%0A" in line  # one path segment, percent-encoded
    assert bytes(up.received[1]).count(secret.encode()) == 1


async def test_the_one_place_that_writes_request_heads_refuses_cr_lf_and_nul(raw: RawUpstreamThread) -> None:
    up = raw.start(RawUpstream())
    client = HttpClient()
    try:
        for bad in ("a\r\nx-evil: 1", "a\nb", "a\rb", "a\0b"):
            with pytest.raises(BadRequest, match=r"header .x-user.*refused, nothing was sent") as caught:
                await client.send(Origin("http", "127.0.0.1", up.port),
                                  PreparedRequest("POST", "/v1/x", [("x-user", bad)], b"{}"), Timeouts())
            assert caught.value.status == 400
            assert "x-evil" not in caught.value.message  # the value is never echoed: it may be a credential
        with pytest.raises(BadRequest, match="request target"):
            await client.send(Origin("http", "127.0.0.1", up.port),
                              PreparedRequest("GET", "/v1/x HTTP/1.1\r\nHost: a\r\n\r\nGET /y", []), Timeouts())
    finally:
        client.close()
    assert up.received == {}  # no connection was even opened


def test_a_configured_value_with_a_line_break_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({"providers": [
        {"name": "p", "type": "openai", "api_key": "sk-from-a-file\n", "headers": {"x-team": "a\r\nb: c"}}]}))
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "providers[0].api_key" in out.stderr and "CR, LF or NUL" in out.stderr
    assert "providers[0].headers" in out.stderr
    assert "sk-from-a-file" not in out.stderr


def test_only_the_wire_module_renders_upstream_request_lines() -> None:
    """A guard for the whole tree: request heads have one writer, where CR/LF/NUL are refused."""
    writers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                     if re.search(r" HTTP/1\.1\\r\\n", p.read_text()))
    assert writers == ["providers/wire.py"]
