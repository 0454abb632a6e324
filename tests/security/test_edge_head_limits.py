"""The real gateway against hostile request heads: a client-chosen model name with CR/LF never becomes a response
header, and huge heads (one name repeated 200,000 times, a 100 MB value) are refused fast, without freezing the
process or keeping the memory."""

from __future__ import annotations

import json
import socket
import threading
import time

import psutil
from tests.conftest import GatewayProcess
from tests.security.edge_wire import MASTER_KEY, answered_within, edge_gateway, exchange, head_and_body, statuses

__all__ = ["edge_gateway"]
MB = 1024 * 1024


def test_cr_lf_in_a_model_name_never_reaches_a_response_header(edge_gateway: GatewayProcess) -> None:
    body = json.dumps({"model": "up/x\r\nset-cookie: a=b", "messages": [{"role": "user", "content": "hi"}]})
    data = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (MASTER_KEY.encode(), len(body), body.encode()))
    out, closed = exchange(edge_gateway.port, data, wait=5)
    head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert statuses(out) == [200] and closed
    assert b"set-cookie" not in head and b"\r\nx-gateway-deployment" not in head
    assert b"x-gateway-provider: up" in head  # the safe headers are still there: only the unsafe one is left out
    headers, rest = head_and_body(out)
    assert int(headers["content-length"]) == len(rest) and json.loads(rest)["choices"]


def flood(port: int, data: bytes) -> tuple[bytes, float]:
    """Send `data` as fast as the server takes it; return the answer and how long until the server answered or
    closed."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        view = memoryview(data)
        sent = 0
        try:
            while sent < len(data):
                sent += sock.send(view[sent:sent + MB])
        except OSError:  # the server closed while we were still sending: refused early
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
    return out, time.monotonic() - started


def assert_refused_fast_and_responsive(gw: GatewayProcess, data: bytes) -> None:
    proc = psutil.Process(gw.proc.pid)
    rss_before = proc.memory_info().rss
    slowest: list[float] = []
    stop = threading.Event()

    def probe() -> None:  # another client keeps asking while the flood arrives
        while not stop.is_set():
            slowest.append(answered_within(gw.port, 1.0))
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        out, took = flood(gw.port, data)
        time.sleep(0.3)
    finally:
        stop.set()
        prober.join()
    assert (statuses(out) in ([], [431]) and b"431" in out) or out == b"", out[:200]
    assert took < 2.0, f"refusing took {took:.2f} s"
    assert slowest and max(slowest) < 1.0
    assert proc.memory_info().rss - rss_before < 20 * MB, "the refused head's memory was kept"


def test_one_header_name_repeated_200000_times_is_refused_fast(edge_gateway: GatewayProcess) -> None:
    assert_refused_fast_and_responsive(
        edge_gateway, b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"x-a: 1\r\n" * 200_000 + b"\r\n")


def test_a_100_mb_header_is_refused_fast(edge_gateway: GatewayProcess) -> None:
    assert_refused_fast_and_responsive(
        edge_gateway, b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (100 * MB) + b"\r\n\r\n")


def test_more_header_fields_than_the_limit_get_431(edge_gateway: GatewayProcess) -> None:
    out, _ = exchange(edge_gateway.port, b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"x-a: 1\r\n" * 150 + b"\r\n")
    assert statuses(out) == [431]


def test_a_url_over_the_limit_gets_414(edge_gateway: GatewayProcess) -> None:
    out, _ = exchange(edge_gateway.port, b"GET /v1/" + b"a" * 9000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
    assert statuses(out) == [414] and b"uri_too_long" in out
