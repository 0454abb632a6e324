"""Slow clients against the real gateway: a head or a body sent a byte at a time, a body that never comes, and an
idle keep-alive connection are all ended by the edge's timers (`server.limits.head_timeout_s`, `body_timeout_s`)."""

from __future__ import annotations

import socket
import time

from tests.conftest import GatewayProcess
from tests.security.edge_wire import (
    BODY_TIMEOUT_S,
    HEAD_TIMEOUT_S,
    edge_gateway,
    get,
    read_until_quiet,
    statuses,
)

__all__ = ["edge_gateway"]
SLACK_S = 1.5


def trickle(port: int, head: bytes, drip: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Send `head` at once, then `drip` one byte every `every` seconds until the server answers or closes.
    Returns what came back and when (seconds after the first byte)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(every)
        started = time.monotonic()
        sock.sendall(head)
        out = b""
        for i in range(int(limit / every)):
            try:
                if i < len(drip):
                    sock.send(drip[i:i + 1])
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: the server closed
                break
            if not chunk:
                break
            out += chunk
            if out.endswith(b"}"):
                break
        return out, time.monotonic() - started


def test_a_head_sent_a_byte_at_a_time_is_closed_after_the_head_timeout(edge_gateway: GatewayProcess) -> None:
    out, took = trickle(edge_gateway.port, b"", b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 200,
                        every=0.25, limit=HEAD_TIMEOUT_S * 4)
    assert statuses(out) in ([], [408]), out[:200]
    assert HEAD_TIMEOUT_S - 0.5 <= took <= HEAD_TIMEOUT_S + SLACK_S, took


def test_a_body_sent_a_byte_at_a_time_gets_408(edge_gateway: GatewayProcess) -> None:
    head = b"POST /api/v1/keys HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    out, took = trickle(edge_gateway.port, head, b"{" + b" " * 99, every=0.25, limit=BODY_TIMEOUT_S * 4)
    assert statuses(out) == [408] and b"request_timeout" in out
    assert took <= BODY_TIMEOUT_S + SLACK_S, took


def test_a_body_that_never_comes_gets_408(edge_gateway: GatewayProcess) -> None:
    head = b"POST /api/v1/keys HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    out, took = trickle(edge_gateway.port, head, b"", every=0.25, limit=BODY_TIMEOUT_S * 4)
    assert statuses(out) == [408] and b"request_timeout" in out
    assert took <= BODY_TIMEOUT_S + SLACK_S, took


def test_an_idle_keep_alive_connection_is_closed(edge_gateway: GatewayProcess) -> None:
    """granian (hyper) runs its head timer while it waits for the next request on a kept-alive connection, so an
    idle connection is closed after `head_timeout_s` (`server.keepalive_timeout_s` does not apply to HTTP/1.1)."""
    with socket.create_connection(("127.0.0.1", edge_gateway.port)) as sock:
        sock.sendall(get())
        first, _ = read_until_quiet(sock, 0.3)
        assert statuses(first) == [200]
        started = time.monotonic()
        rest, closed = read_until_quiet(sock, HEAD_TIMEOUT_S + SLACK_S + 1)
        took = time.monotonic() - started
    assert closed and rest == b""
    assert took <= HEAD_TIMEOUT_S + SLACK_S, took
