"""The whole gateway's /metrics with several workers: every worker's series added up, or a 503, never a part."""

from __future__ import annotations

import socket

import pytest
from tests.serving import served

from llm_gateway.api.health import HealthApi
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.providers.http import HttpClient, Origin
from llm_gateway.server.asgi import Edge
from llm_gateway.server.http import Request
from llm_gateway.settings import EdgeLimits
from llm_gateway.telemetry.metrics import Registry


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    def send(self, status: int, body: bytes, headers: object = None, content_type: bytes = b"") -> None:
        self.status, self.body = status, body


def registry(requests: int) -> Registry:
    r = Registry()
    r.counter("llm_gateway_requests_total", "Requests", ["status"]).inc(("200",), requests)
    return r


def scrape() -> Request:
    return Request("GET", "/metrics", "", {}, b"", "127.0.0.1:1")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_metrics_add_up_the_other_workers_series() -> None:
    other = HealthApi([], registry(5))
    client = HttpClient()
    async with served(Edge(other.own_metrics, EdgeLimits(), 1 << 20)) as port:
        api = HealthApi([], registry(3), worker_count=2, workers=[Origin("http", "127.0.0.1", port)], client=client)
        answer = Answer()
        await api.metrics(scrape(), answer)  # type: ignore[arg-type]  # the one method the handler calls
        assert answer.status == 200
        assert 'llm_gateway_requests_total{status="200"} 8' in answer.body.decode()
        own = Answer()
        await api.own_metrics(scrape(), own)  # type: ignore[arg-type]
        assert 'llm_gateway_requests_total{status="200"} 3' in own.body.decode()
    client.close()


async def test_a_worker_that_cannot_be_read_fails_the_scrape() -> None:
    client = HttpClient()
    api = HealthApi([], registry(3), worker_count=2, workers=[Origin("http", "127.0.0.1", closed_port())],
                    client=client)
    with pytest.raises(ServiceUnavailable, match="cannot read the metrics of every worker"):
        await api.metrics(scrape(), Answer())  # type: ignore[arg-type]
    client.close()


async def test_several_workers_without_metrics_listeners_say_so() -> None:
    api = HealthApi([], registry(3), worker_count=2, workers=[])
    with pytest.raises(ServiceUnavailable, match=r"server\.metrics_port 0"):
        await api.metrics(scrape(), Answer())  # type: ignore[arg-type]
