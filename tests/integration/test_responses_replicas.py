"""Stored responses on PostgreSQL: two replicas, each turn of a chain on the other one, with no waiting."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess
from tests.pg import fresh_schema
from tests.upstream import Upstream


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema("test_responses", skip_unavailable=True) as url:
        yield url


def test_a_chain_alternates_between_replicas(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                            pg_url: str) -> None:
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}], "database": {"url": pg_url}}
    replicas = [gateway_factory(config=config) for _ in range(2)]
    clients = [openai.OpenAI(base_url=gw.v1, api_key="k", max_retries=0) for gw in replicas]
    previous = None
    for turn in range(4):
        client = clients[turn % 2]
        if turn % 2:
            with client.responses.stream(model="m", input=f"q{turn}", previous_response_id=previous) as stream:
                previous = stream.get_final_response().id
        else:
            previous = client.responses.create(model="m", input=f"q{turn}", previous_response_id=previous).id
    assert [m["content"] for m in upstream.requests[-1].body["messages"] if m["role"] == "user"] == [
        "q0", "q1", "q2", "q3"]
    assert clients[0].responses.retrieve(previous).previous_response_id is not None
    clients[1].responses.delete(previous)
    with pytest.raises(openai.NotFoundError):
        clients[0].responses.retrieve(previous)
    # What PostgreSQL refuses in text (NUL) or a column's width must neither lose an answer nor be a 500.
    for model in ("m\u0000x", "x" * 250):
        stored = clients[0].responses.create(model=model, input="odd")
        assert clients[1].responses.retrieve(stored.id).id == stored.id
    for method, path in (("GET", "/v1/responses/a%00b"), ("DELETE", "/v1/responses/a%00b"),
                         ("GET", "/v1/responses/a%00b/input_items")):
        r = httpx.request(method, f"{replicas[0].url}{path}")
        assert r.status_code == 404, (path, r.text)
    r = httpx.post(f"{replicas[0].v1}/responses", json={"model": "m", "input": "hi",
                                                        "previous_response_id": "resp_\u0000"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "previous_response_not_found", r.text
    assert "Traceback" not in replicas[0].log()
