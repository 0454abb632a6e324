"""The whole gateway's /metrics with several workers: every worker's series added up, or a 503, never a part;
with `metrics.bearer_token`, the scrape of the other workers sends the token their listeners ask for."""

from __future__ import annotations

import socket

import pytest
from tests.serving import served

from llm_gateway.api.cold import cold_app
from llm_gateway.api.health import HealthApi
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.providers.http import HttpClient, Origin
from llm_gateway.telemetry.metrics import Registry


def registry(requests: int) -> Registry:
    r = Registry()
    r.counter("llm_gateway_requests_total", "Requests", ["status"]).inc(("200",), requests)
    return r


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("token", [None, "scrape-token-1"])
async def test_metrics_add_up_the_other_workers_series(token: str | None) -> None:
    other = HealthApi([], registry(5), bearer_token=token)
    client = HttpClient()
    async with served(cold_app([other.router(whole=False)], documented=False)) as port:
        api = HealthApi([], registry(3), worker_count=2, workers=[Origin("http", "127.0.0.1", port)], client=client,
                        bearer_token=token)
        assert 'llm_gateway_requests_total{status="200"} 8' in (await api.metrics()).decode()
        assert 'llm_gateway_requests_total{status="200"} 3' in api.own_metrics().decode()
        if token is not None:  # a worker whose listener wants a token this one does not send: no partial sums
            without = HealthApi([], registry(3), worker_count=2, workers=[Origin("http", "127.0.0.1", port)],
                                client=client)
            with pytest.raises(ServiceUnavailable, match="answered 401"):
                await without.metrics()
    client.close()


async def test_a_worker_that_cannot_be_read_fails_the_scrape() -> None:
    client = HttpClient()
    api = HealthApi([], registry(3), worker_count=2, workers=[Origin("http", "127.0.0.1", closed_port())],
                    client=client)
    with pytest.raises(ServiceUnavailable, match="cannot read the metrics of every worker"):
        await api.metrics()
    client.close()


async def test_several_workers_without_metrics_listeners_say_so() -> None:
    api = HealthApi([], registry(3), worker_count=2, workers=[])
    with pytest.raises(ServiceUnavailable, match=r"server\.metrics_port 0"):
        await api.metrics()
