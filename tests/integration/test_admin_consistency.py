"""Admin state stays consistent, tried through real gateway processes as an admin or a user would: deleting a
user, the self-service cap under concurrency and across replicas, out-of-range input, a database outage, the
same key parsing on every admin route, and `metrics.bearer_token` on both ports."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess
from tests.pg import fresh_schema
from tests.upstream import Upstream

MASTER = "mk-consistency-5e1b"


def _pg_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/admin.db"
        return
    if not _pg_up():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    with fresh_schema("test_consist") as url:
        yield url


def start(factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str, **extra: Any) -> GatewayProcess:
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}],
              "database": {"url": db_url, "ledger_flush_interval_s": 0.05}, "auth": {"key_cache_ttl_s": 0.3},
              **extra}
    return factory(config=config, env={"LLM_GATEWAY_MASTER_KEY": MASTER})


def admin(gw: GatewayProcess, method: str, path: str, token: str = MASTER, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}", **kw.pop("headers", {})}
    return httpx.request(method, f"{gw.url}/api/v1/{path}", headers=headers, timeout=30, **kw)


def chat(gw: GatewayProcess, key: str) -> httpx.Response:
    return httpx.post(f"{gw.v1}/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


def test_deleting_a_user_revokes_its_keys_and_keeps_its_history(gateway_factory: Callable[..., GatewayProcess],
                                                                upstream: Upstream, db_url: str) -> None:
    gw = start(gateway_factory, upstream, db_url)
    token = admin(gw, "POST", "users", json={"id": "carol", "budget_usd": 10}).json()["token"]
    mine = admin(gw, "POST", "me/keys", token, json={"alias": "laptop"}).json()["key"]
    given = admin(gw, "POST", "keys", json={"user_id": "carol"}).json()["key"]
    assert chat(gw, mine).status_code == 200 and chat(gw, given).status_code == 200
    refused = admin(gw, "DELETE", "users/carol")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "user_has_keys", refused.text
    assert admin(gw, "GET", "users/carol").status_code == 200 and chat(gw, mine).status_code == 200
    deleted = admin(gw, "DELETE", "users/carol", params={"cascade": "true"})
    assert deleted.status_code == 200 and deleted.json()["revoked_keys"] == 2, deleted.text
    for key in (mine, given):
        assert chat(gw, key).status_code == 401  # at once on this replica (its key cache is told)
    assert admin(gw, "GET", "keys", params={"user_id": "carol"}).json()["data"] == []
    assert admin(gw, "GET", "me/keys", token).status_code == 401
    for _ in range(100):  # the ledger keeps the user's history: reports still show its spend
        groups = admin(gw, "GET", "usage", params={"group_by": "user"}).json()["groups"]
        if any(g["user"] == "carol" and g["total_requests"] == 3 for g in groups):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(groups)
    assert admin(gw, "DELETE", "users/carol").status_code == 404



def test_a_team_with_keys_is_not_deleted_from_under_them(gateway_factory: Callable[..., GatewayProcess],
                                                          upstream: Upstream, db_url: str) -> None:
    """Deleting a team must not free its keys from the team's budget (or its guardrails and policies)."""
    gw = start(gateway_factory, upstream, db_url)
    assert admin(gw, "POST", "teams", json={"id": "interns", "budget_usd": 0.000001}).status_code in (200, 201)
    key = admin(gw, "POST", "keys", json={"team_id": "interns"}).json()["key"]
    assert chat(gw, key).status_code == 200  # spends the team's budget
    for _ in range(100):  # the spend is settled: the budget binds
        if (over := chat(gw, key)).status_code != 200:
            break
        time.sleep(0.05)
    assert over.json()["error"]["code"] == "budget_exceeded", over.text
    refused = admin(gw, "DELETE", "teams/interns")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "team_has_keys", refused.text
    assert admin(gw, "GET", "teams/interns").status_code == 200
    assert chat(gw, key).json()["error"]["code"] == "budget_exceeded"  # still bound
    deleted = admin(gw, "DELETE", "teams/interns", params={"cascade": "true"})
    assert deleted.status_code == 200 and deleted.json()["revoked_keys"] == 1, deleted.text
    assert chat(gw, key).status_code == 401  # at once on this replica
    assert admin(gw, "GET", "keys", params={"team_id": "interns"}).json()["data"] == []
    assert admin(gw, "DELETE", "teams/interns").status_code == 404

def test_the_self_service_cap_holds_under_concurrency_and_across_replicas(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str) -> None:
    replicas = [start(gateway_factory, upstream, db_url, ) for _ in range(2)]
    users = {}
    for name in ("dora", "egon"):
        users[name] = admin(replicas[0], "POST", "users", json={"id": name, "max_keys": 2}).json()["token"]

    async def create_many(token: str) -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [client.post(f"{replicas[i % 2].url}/api/v1/me/keys", json={"alias": f"k{i}"},
                                 headers={"authorization": f"Bearer {token}"}) for i in range(30)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    for name, token in users.items():
        codes = asyncio.run(create_many(token))
        assert sorted(codes) == [201] * 2 + [400] * 28, (name, codes)
        held = admin(replicas[1], "GET", "keys", params={"user_id": name}).json()["data"]
        assert len(held) == 2, held


def test_out_of_range_input_gets_422(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                     db_url: str) -> None:
    gw = start(gateway_factory, upstream, db_url)
    token = admin(gw, "POST", "users", json={"id": "finn"}).json()["token"]
    for path, who, body in (
            ("keys", MASTER, {"expires_in_s": 1e300}), ("me/keys", token, {"expires_in_s": 1e300}),
            ("keys", MASTER, {"expires_at": 10**20}), ("keys", MASTER, {"rpm_limit": 2**40}),
            ("users", MASTER, {"max_keys": 2**40}), ("keys", MASTER, {"alias": "a\x00b"}),
            ("teams", MASTER, {"id": "t" * 65}), ("keys", MASTER, {"blocked": "yes"}),
            ("users", MASTER, {"metadata": {"n": 2**70}})):  # found by schemathesis: a 500 before
        r = admin(gw, "POST", path, who, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["param"] == next(iter(body)), r.text
    r = admin(gw, "POST", "keys", content=b'{"budget_usd": NaN}', headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and "error" in r.json(), r.text
    for params in ({"start": "99999999999999999999"}, {"offset": str(10**20)}, {"limit": "0"}):
        r = admin(gw, "GET", "usage", params=params)
        assert r.status_code == 422, (params, r.text)
    assert admin(gw, "GET", "keys/" + "x" * 65).status_code == 422
    assert admin(gw, "POST", "keys", json={"expires_in_s": 3600}).status_code == 201  # in range still works


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut (listener and open connections closed) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.cut_event = threading.Event()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        assert self._listener is not None
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: close alone would not
        except OSError:
            pass
        self._listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_a_database_outage_gets_503_with_retry_after(gateway_factory: Callable[..., GatewayProcess],
                                                     upstream: Upstream, db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("an outage is a PostgreSQL matter")
    proxy = Proxy(("127.0.0.1", 5432))
    gw = start(gateway_factory, upstream, db_url.replace(":5432/", f":{proxy.port}/"))
    assert admin(gw, "POST", "users", json={"id": "gus"}).status_code == 201
    proxy.cut()
    for method, path, body in (("GET", "keys", None), ("POST", "keys", {}), ("GET", "users/gus", None),
                               ("GET", "usage", None), ("DELETE", "users/gus", None)):
        r = admin(gw, method, path, json=body)
        assert r.status_code == 503, (path, r.text)
        assert r.headers["retry-after"].isdigit() and r.json()["error"]["code"] == "database_unavailable"
        assert str(proxy.port) not in r.text and "postgres" not in r.text
    proxy.restore()
    for _ in range(50):
        if admin(gw, "GET", "users/gus").status_code == 200:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the admin API did not come back with the database")


def test_every_admin_route_reads_the_key_the_same_way(gateway_factory: Callable[..., GatewayProcess],
                                                      upstream: Upstream, tmp_path: Path) -> None:
    gw = start(gateway_factory, upstream, f"sqlite:///{tmp_path}/a.db")
    forms = [{"authorization": f"Bearer {MASTER}"}, {"authorization": f"bearer {MASTER}"},
             {"x-api-key": MASTER}, {"api-key": MASTER}]
    for path in ("/api/v1/providers/status", "/api/v1/keys", "/api/v1/usage", "/api/v1/models"):
        for headers in forms:
            r = httpx.get(f"{gw.url}{path}", headers=headers)
            assert r.status_code == 200, (path, headers, r.text)
        for headers in ({}, {"authorization": f"Bearer {MASTER}x"}, {"authorization": f"Basic {MASTER}"}):
            r = httpx.get(f"{gw.url}{path}", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (path, r.text)


def test_metrics_bearer_token_guards_both_ports(gateway_factory: Callable[..., GatewayProcess],
                                                upstream: Upstream, tmp_path: Path) -> None:
    gw = start(gateway_factory, upstream, f"sqlite:///{tmp_path}/a.db", metrics={"bearer_token": "scrape-me-42"})
    for url in (f"{gw.url}/metrics", f"http://127.0.0.1:{gw.metrics_port}/metrics"):
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {MASTER}"},
                        {"x-api-key": "scrape-me-42"}):
            r = httpx.get(url, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", (url, r.text)
            assert "scrape-me-42" not in r.text
        r = httpx.get(url, headers={"authorization": "Bearer scrape-me-42"})
        assert r.status_code == 200 and "# TYPE" in r.text, (url, r.text)
    assert httpx.get(f"http://127.0.0.1:{gw.metrics_port}/health").status_code == 200  # health stays open
    assert httpx.get(f"{gw.url}/health").status_code == 200
    open_gw = start(gateway_factory, upstream, f"sqlite:///{tmp_path}/b.db")
    assert httpx.get(f"{open_gw.url}/metrics").status_code == 200  # off by default
