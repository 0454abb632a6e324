"""Raw-socket tools for the edge's security tests: one real `llm-gateway` per test module, bytes in, bytes out."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import GatewayProcess, launch
from tests.upstream import Upstream

MASTER_KEY = "sk-edge-master-0123456789"
HEAD_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def edge_config(upstream: Upstream, **server: Any) -> dict[str, Any]:
    """A gateway in front of the test upstream (provider `up`, any model name), a master key, short edge timers."""
    limits = {"head_timeout_s": HEAD_TIMEOUT_S, "body_timeout_s": BODY_TIMEOUT_S, **server.pop("limits", {})}
    return {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                           "models": ["*"]}],
            "auth": {"master_key": MASTER_KEY},
            "server": {"limits": limits, **server}}


@pytest.fixture(scope="module")
def edge_gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One real gateway process shared by a module's tests (each test opens its own connections)."""
    tmp: Path = tmp_path_factory.mktemp("edge")
    gw = launch([], tmp, None, edge_config(upstream))
    yield gw
    gw.stop(timeout=10)


def exchange(port: int, data: bytes, wait: float = 1.5) -> tuple[bytes, bool]:
    """Send `data` on a new connection; read until the server closes or stays silent for `wait` seconds.
    Returns what came back and whether the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        return read_until_quiet(sock, wait)


def read_until_quiet(sock: socket.socket, wait: float) -> tuple[bytes, bool]:
    sock.settimeout(wait)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out, True
            out += chunk
    except TimeoutError:
        return out, False
    except ConnectionResetError:
        return out, True


def statuses(raw: bytes) -> list[int]:
    """The status codes of the responses found in `raw`, in order."""
    return [int(code) for code in _STATUS_LINE.findall(raw)]


def head_and_body(raw: bytes) -> tuple[dict[str, str], bytes]:
    """The first response's headers (lower-case names; the last of repeats) and the bytes after its head."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers, rest


def get(path: str = "/health", extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    host = b"host: 127.0.0.1\r\n" if version == b"HTTP/1.1" else b""
    return b"GET %s %s\r\n%s%s\r\n" % (path.encode(), version, host, extra)


def answered_within(port: int, seconds: float) -> float:
    """How long a fresh GET /health took; fails the test when it took longer than `seconds`."""
    started = time.monotonic()
    out, _ = exchange(port, get(extra=b"connection: close\r\n"), wait=seconds)
    took = time.monotonic() - started
    assert statuses(out)[:1] == [200], f"/health not answered within {seconds} s: {out[:200]!r}"
    return took
