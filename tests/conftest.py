"""Shared fixtures: a local upstream, and real gateway processes started with the `llm-gateway` command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.upstream import Upstream, UpstreamThread, free_port


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    server = UpstreamThread()
    yield server.start()
    server.stop()


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def free_ports_in_a_row(n: int) -> int:
    """A free port p such that p+1 … p+n-1 are free too."""
    while True:
        first = free_port()
        socks = []
        try:
            for port in range(first, first + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()


def launch(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
           config: dict[str, Any] | None = None, wait: bool = True) -> GatewayProcess:
    """Start `llm-gateway` on free ports with `args` (and a config file from `config`); wait for /health."""
    port, metrics_port = free_port(), free_ports_in_a_row(4)  # --workers N: worker i serves metrics_port + i
    cmd = [sys.executable, "-m", "llm_gateway", "--port", str(port), "--http-proxy-metrics-port", str(metrics_port),
           "--host", "127.0.0.1", *args]
    if config is not None:
        path = tmp_path / f"gateway-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(path)]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path = tmp_path / f"gateway-{port}.log"
    proc = subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=full_env,
                            cwd=str(tmp_path))
    gw = GatewayProcess(proc, port, metrics_port, log_path)
    if wait:
        wait_until_answering(proc, f"{gw.url}/health", log_path, 30, "gateway")
    return gw


def wait_until_answering(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float,
                         what: str, poll: float = 0.05) -> None:
    """Wait until `url` answers 200; raise with the process's log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{what} did not answer {url}:\n{log_path.read_text(errors='replace')}")
        time.sleep(poll)


def upstream_args(upstream: Upstream) -> list[str]:
    """genai-gateway style flags pointing at the test upstream."""
    port = upstream.url.rsplit(":", 1)[1]
    return ["--openai-domain", "127.0.0.1", "--openai-port", port]


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def factory(args: list[str] | None = None, *, config: dict[str, Any] | None = None,
                env: dict[str, str] | None = None, wait: bool = True) -> GatewayProcess:
        gw = launch(args or [], tmp_path, env, config, wait)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        gw.stop(signal.SIGKILL if gw.proc.poll() is None else signal.SIGTERM, timeout=5)


@pytest.fixture
def gateway(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> GatewayProcess:
    """A gateway in genai-gateway mode in front of the test upstream."""
    return gateway_factory(upstream_args(upstream))


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one series in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in (labels or {}).items())
    series = f"{name}{{{want}}}" if want else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == series:
            return float(value)
    return 0.0
