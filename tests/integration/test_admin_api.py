"""The admin API through HTTP: master-key only, users/teams and a user's teams, self-service keys with a cap and in
a team of the user's, pagination over 100k keys, usage totals and groups over a time range (SQLite and PostgreSQL),
models, and /openapi.json."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from tests.conftest import GatewayProcess
from tests.pg import fresh_schema
from tests.upstream import Upstream

from llm_gateway.db.engine import make_engine, upgrade
from llm_gateway.db.tables import keys, usage

MASTER = "mk-admin-test-0c9d"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/admin.db"
        return
    with fresh_schema("test_admin") as url:
        yield url


def start(factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str,
          master: str | None = MASTER, **auth: Any) -> GatewayProcess:
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"]}],
              "models": {"smart": {"deployments": [{"provider": "up", "model": "gpt-4o"}]}},
              "database": {"url": db_url, "ledger_flush_interval_s": 0.05}, "auth": auth}
    return factory(config=config, env={"LLM_GATEWAY_MASTER_KEY": master} if master else {})


class Admin:
    def __init__(self, gw: GatewayProcess, token: str = MASTER) -> None:
        self.client = httpx.Client(base_url=f"{gw.url}/api/v1/", headers={"authorization": f"Bearer {token}"})

    def __call__(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, **kw)
        assert r.status_code == status, r.text
        return r.json()


def test_admin_api_needs_the_master_key(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                        tmp_path: Path) -> None:
    gw = start(gateway_factory, upstream, f"sqlite:///{tmp_path}/a.db")
    assert Admin(gw, "wrong")("GET", "keys", 401)["error"]["type"] == "authentication_error"
    key = Admin(gw)("POST", "keys", 201, json={})["key"]
    assert Admin(gw, key)("GET", "usage", 401)["error"]["code"] == "invalid_api_key"  # a virtual key is no admin
    assert Admin(gw)("POST", "keys", 422, json={"budget_usd": -1})["error"]["param"] == "budget_usd"
    assert Admin(gw)("POST", "keys", 422, json={"colour": "red"})["error"]["param"] == "colour"
    assert Admin(gw)("GET", "keys/nope", 404)["error"]["code"] == "key_not_found"
    open_gw = start(gateway_factory, upstream, f"sqlite:///{tmp_path}/b.db", master=None)
    assert Admin(open_gw)("GET", "keys", 403)["error"]["code"] == "admin_disabled"
    # without a master key the gateway is open, as genai-gateway is
    assert httpx.post(f"{open_gw.v1}/chat/completions", json={"model": "m", "messages": []}).status_code == 200


def test_users_teams_and_self_service_keys(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                           tmp_path: Path) -> None:
    gw = start(gateway_factory, upstream, f"sqlite:///{tmp_path}/a.db", max_keys_per_user=3)
    admin = Admin(gw)
    team = admin("POST", "teams", 201, json={"id": "research", "name": "Research", "budget_usd": 50,
                                             "budget_period": "monthly"})
    assert team["id"] == "research" and team["budget_period"] == "monthly"
    admin("POST", "teams", 409, json={"id": "research"})
    alice = admin("POST", "users", 201, json={"id": "alice", "team_id": "research", "max_keys": 2})
    bob = admin("POST", "users", 201, json={"id": "bob"})
    assert alice["token"].startswith("sk-gwu-") and "token" not in admin("GET", "users/alice")
    assert [u["id"] for u in admin("GET", "users", params={"team_id": "research"})["data"]] == ["alice"]
    assert admin("PATCH", "users/bob", json={"budget_usd": 5})["budget_usd"] == 5

    me = Admin(gw, alice["token"])
    first = me("POST", "me/keys", 201, json={"alias": "laptop", "models": ["smart"]})
    assert first["user_id"] == "alice" and first["team_id"] == "research"  # owner and team come from the token
    me("POST", "me/keys", 201, json={"alias": "ci"})
    assert me("POST", "me/keys", 400, json={})["error"]["code"] == "key_limit_reached"  # alice's cap is 2
    me("POST", "me/keys", 422, json={"user_id": "bob"})  # may not set owner, team or limits
    bob_key = Admin(gw, bob["token"])("POST", "me/keys", 201, json={})
    assert {k["alias"] for k in me("GET", "me/keys")["data"]} == {"laptop", "ci"}
    me("DELETE", f"me/keys/{bob_key['id']}", 404)  # not hers
    me("DELETE", f"me/keys/{first['id']}")
    assert [k["alias"] for k in me("GET", "me/keys")["data"]] == ["ci"]
    assert Admin(gw, "sk-gwu-wrong")("GET", "me/keys", 401)
    r = httpx.post(f"{gw.v1}/chat/completions", headers={"authorization": f"Bearer {first['key']}"},
                   json={"model": "smart", "messages": []})
    assert r.status_code == 401  # deleted

    spend = {(b["kind"], b["id"]): b for b in admin("GET", "spend")["data"]}
    assert spend[("team", "research")]["budget_usd"] == 50 and spend[("user", "bob")]["budget_usd"] == 5
    assert admin("DELETE", "teams/research", 409)["error"]["code"] == "team_has_keys"  # alice's "ci" key
    assert admin("DELETE", "teams/research", params={"cascade": "true"})["revoked_keys"] == 1
    assert admin("DELETE", "users/bob", 409)["error"]["code"] == "user_has_keys"  # bob holds a key
    assert admin("DELETE", "users/bob", params={"cascade": "true"})["revoked_keys"] == 1
    assert ("user", "bob") not in {(b["kind"], b["id"]) for b in admin("GET", "spend")["data"]}


def test_pagination_stays_fast_with_100k_keys(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                              tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/many.db"
    engine = make_engine(url)
    upgrade(engine)
    now = int(time.time() * 1000)
    with engine.begin() as conn:
        conn.execute(insert(keys), [{
            "id": f"key_{i:08d}", "key_hash": f"{i:064x}", "key_prefix": "sk-gw-xxxx", "user_id": f"u{i % 1000}",
            "budget_period": "total", "metadata": "{}", "blocked": False, "created_at": now, "updated_at": now,
        } for i in range(100_000)])
    engine.dispose()
    gw = start(gateway_factory, upstream, url)
    admin = Admin(gw)
    seen, cursor, pages = 0, None, []
    for _ in range(3):
        t0 = time.perf_counter()
        page = admin("GET", "keys", params={"limit": 1000, **({"after": cursor} if cursor else {})})
        pages.append(time.perf_counter() - t0)
        seen += len(page["data"])
        cursor = page["next_cursor"]
    assert seen == 3000 and cursor == "key_00002999"
    t0 = time.perf_counter()
    last = admin("GET", "keys", params={"limit": 10, "after": "key_00099995"})
    deep = time.perf_counter() - t0
    assert [k["id"] for k in last["data"]] == [f"key_{i:08d}" for i in range(99_996, 100_000)]
    assert last["has_more"] is False and last["next_cursor"] is None
    by_user = admin("GET", "keys", params={"user_id": "u7", "limit": 1000})["data"]
    assert len(by_user) == 100 and all(k["user_id"] == "u7" for k in by_user)
    assert max(pages) < 0.5 and deep < 0.1, (pages, deep)
    admin("GET", "keys", 422, params={"limit": 5000})


def test_usage_totals_and_groups_over_a_time_range(gateway_factory: Callable[..., GatewayProcess],
                                                   upstream: Upstream, db_url: str) -> None:
    gw = start(gateway_factory, upstream, db_url)
    admin = Admin(gw)
    admin("POST", "teams", 201, json={"id": "t1"})
    admin("POST", "users", 201, json={"id": "ann", "team_id": "t1"})
    k1 = admin("POST", "keys", 201, json={"user_id": "ann"})
    k2 = admin("POST", "keys", 201, json={})
    for key, model, n in ((k1, "gpt-4o-mini", 3), (k1, "smart", 1), (k2, "gpt-4o-mini", 2)):
        for _ in range(n):
            r = httpx.post(f"{gw.v1}/chat/completions", headers={"authorization": f"Bearer {key['key']}"},
                           json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
    # Older rows, written as the ledger would, for the day grouping and the time range.
    day = calendar.timegm((2026, 1, 10, 12, 0, 0)) * 1000
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(insert(usage), [{"ts": day + i * 86_400_000, "request_id": f"old-{i}", "model": "old",
                                      "prompt_tokens": 10, "completion_tokens": 1, "cost_usd": 0.5,
                                      "cache_hit": i == 0, "status": 200} for i in range(3)])
    engine.dispose()
    for _ in range(100):  # the ledger writes every 50 ms
        totals = admin("GET", "usage", params={"start": "2026-11-01"})["totals"]
        if totals["total_requests"] == 6:
            break
        time.sleep(0.05)
    mini, gpt4o = 11 * 0.15e-6 + 5 * 0.6e-6, 11 * 2.5e-6 + 5 * 10e-6
    assert totals == {"total_requests": 6, "total_tokens": 96, "prompt_tokens": 66, "completion_tokens": 30,
                      "total_cost": pytest.approx(5 * mini + gpt4o), "cache_hits": 0, "cache_misses": 6,
                      "errors": 0, "cached_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
                      "unpriced_requests": 0}
    by_key = {g["key"]: g for g in admin("GET", "usage", params={"group_by": "key", "start": "2026-11-01"})[
        "groups"]}
    assert by_key[k1["id"]]["total_requests"] == 4 and by_key[k2["id"]]["total_requests"] == 2
    by_user = admin("GET", "usage", params={"group_by": "user", "start": "2026-11-01"})["groups"]
    assert [(g["user"], g["total_requests"]) for g in by_user] == [("ann", 4), (None, 2)]
    by_team = admin("GET", "usage", params={"group_by": "team", "key_id": k1["id"]})["groups"]
    assert [(g["team"], g["total_requests"]) for g in by_team] == [("t1", 4)]
    by_model = admin("GET", "usage", params={"group_by": "model", "start": "2026-11-01"})["groups"]
    assert [g["model"] for g in by_model] == ["smart", "gpt-4o-mini"]  # most expensive first
    days = admin("GET", "usage", params={"group_by": "day", "start": "2026-01-10", "end": "2026-01-12"})
    assert [(g["day"], g["total_requests"], g["cache_hits"]) for g in days["groups"]] == [
        ("2026-01-10", 1, 1), ("2026-01-11", 1, 0)]
    assert days["totals"]["total_cost"] == pytest.approx(1.0) and days["totals"]["cache_misses"] == 1
    everything = admin("GET", "usage", params={"start": "2026-01-01", "group_by": "model", "limit": 1,
                                               "offset": 1})
    assert everything["totals"]["total_requests"] == 9 and [g["model"] for g in everything["groups"]] == ["smart"]
    admin("GET", "usage", 422, params={"group_by": "colour"})
    admin("GET", "usage", 400, params={"start": "yesterday"})


def test_models_and_openapi(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                            tmp_path: Path) -> None:
    gw = start(gateway_factory, upstream, f"sqlite:///{tmp_path}/a.db")
    models = Admin(gw)("GET", "models")
    smart = next(m for m in models["data"] if m["id"] == "smart")
    assert smart["deployments"][0]["price_per_1m"]["input"] == 2.5
    source = f"genai-prices {models['price_database']}: openai/gpt-4o (by model name)"
    assert smart["deployments"][0]["price_source"] == source
    spec = httpx.get(f"{gw.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    expected = {"/api/v1/keys": {"get", "post"}, "/api/v1/keys/{id}": {"get", "patch", "delete"},
                "/api/v1/keys/{id}/rotate": {"post"}, "/api/v1/users": {"get", "post"},
                "/api/v1/teams/{id}": {"get", "patch", "delete"}, "/api/v1/usage": {"get"},
                "/api/v1/spend": {"get"}, "/api/v1/models": {"get"}, "/api/v1/me/keys": {"get", "post"},
                "/api/v1/users/{id}/teams": {"get", "put"}, "/api/v1/me/teams": {"get"}}
    for path, methods in expected.items():
        assert methods <= set(spec["paths"][path]), path
    refs = {v for v in _walk(spec) if isinstance(v, str) and v.startswith("#/components/schemas/")}
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(spec["components"]["schemas"])


def _walk(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
    else:
        yield node


def test_a_users_teams_through_the_admin_and_self_service_api(gateway_factory: Callable[..., GatewayProcess],
                                                              upstream: Upstream, db_url: str) -> None:
    gw = start(gateway_factory, upstream, db_url)
    admin = Admin(gw)
    for team in ("data", "ml", "ops"):
        admin("POST", "teams", 201, json={"id": team})
    ann = admin("POST", "users", 201, json={"id": "ann", "team_id": "data"})
    assert (ann["team_id"], ann["teams"]) == ("data", ["data"])
    put = admin("PUT", "users/ann/teams", json={"teams": ["data", "ml"], "team_id": "ml"})
    assert put == {"user_id": "ann", "team_id": "ml", "teams": ["ml", "data"], "blocked_keys": []}
    assert admin("GET", "users/ann/teams")["teams"] == ["ml", "data"]
    assert admin("GET", "users/ann")["teams"] == ["ml", "data"]
    assert [u["id"] for u in admin("GET", "users", params={"team_id": "data"})["data"]] == ["ann"]  # not primary
    assert admin("PUT", "users/ann/teams", 422, json={"teams": ["nope"]})["error"]["param"] == "teams"
    assert admin("PUT", "users/ann/teams", 422, json={"teams": ["ml"], "team_id": "data"})["error"]["param"] == (
        "team_id")
    admin("PUT", "users/nobody/teams", 404, json={"teams": []})

    me = Admin(gw, ann["token"])
    assert me("GET", "me/teams") == {"user_id": "ann", "team_id": "ml", "teams": ["ml", "data"], "blocked_keys": []}
    data_key = me("POST", "me/keys", 201, json={"alias": "in-data", "team_id": "data"})
    ml_key = me("POST", "me/keys", 201, json={"alias": "default"})
    assert (data_key["team_id"], ml_key["team_id"]) == ("data", "ml")  # the primary team by default
    refused = me("POST", "me/keys", 403, json={"team_id": "ops"})["error"]
    assert refused["code"] == "not_a_member" and "ops" in refused["message"]
    assert len(me("GET", "me/keys")["data"]) == 2

    def chat(key: str) -> httpx.Response:
        return httpx.post(f"{gw.v1}/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})

    assert chat(data_key["key"]).status_code == 200 and chat(ml_key["key"]).status_code == 200
    left = admin("PUT", "users/ann/teams", json={"teams": ["ml"]})
    assert left["blocked_keys"] == [data_key["id"]] and left["teams"] == ["ml"]
    blocked = chat(data_key["key"])
    assert blocked.status_code == 401 and blocked.json()["error"]["code"] == "key_blocked"  # at once
    assert chat(ml_key["key"]).status_code == 200
    moved = admin("PATCH", "users/ann", json={"team_id": "ops"})  # out of the primary team (ml), into ops
    assert (moved["team_id"], moved["teams"]) == ("ops", ["ops"])
    assert chat(ml_key["key"]).json()["error"]["code"] == "key_blocked"
    changes = [e["detail"] for e in admin("GET", "audit", params={"user_id": "ann", "event": "team_change"})["data"]]
    assert changes == [{"joined": ["ops"], "left": ["ml"]}, {"joined": [], "left": ["data"]},
                       {"joined": ["ml"], "left": []}, {"joined": ["data"], "left": []}]
    assert len(admin("GET", "audit", params={"user_id": "ann", "event": "key_blocked"})["data"]) == 2
    assert gw.stop() == 0  # before db_url drops its schema: the ledger may still be writing
