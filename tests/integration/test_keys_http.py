"""Virtual keys through HTTP against real gateway processes, on SQLite and on PostgreSQL: 401/403/429,
rotation, the three key headers, hashes at rest, no secrets in logs, concurrent budgets, and the CLI."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, text
from tests.conftest import GatewayProcess
from tests.pg import fresh_schema
from tests.upstream import Upstream

from llm_gateway.keys.model import hash_secret

MASTER = "mk-test-master-7f3a9c0d2e"
PROVIDER_SECRET = "sk-provider-secret-4b8e1f"
MESSAGES = [{"role": "user", "content": "Say hello"}]
PRICED = {"input": 1000.0, "output": 2000.0}  # USD per 1M: 11 prompt + 5 completion tokens = $0.021
COST = 11 * 1000e-6 + 5 * 2000e-6


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/gateway.db"
        return
    with fresh_schema("test_keys") as url:
        yield url


def gateway_config(upstream: Upstream, db_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                       "api_key": PROVIDER_SECRET, "models": ["*"]}],
        "database": {"url": db_url, "ledger_flush_interval_s": 0.1},
        "auth": {"key_cache_ttl_s": 0.3},
        "pricing": {"priced": PRICED, "slow-150": PRICED},
        **extra,
    }


def start(factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str,
          args: list[str] | None = None) -> GatewayProcess:
    return factory(args or [], config=gateway_config(upstream, db_url), env={"LLM_GATEWAY_MASTER_KEY": MASTER})


def admin(gw: GatewayProcess, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.url}/api/v1/{path}", headers={"authorization": f"Bearer {MASTER}"}, **kw)


def chat(gw: GatewayProcess, headers: dict[str, str], model: str = "priced", **kw: Any) -> httpx.Response:
    return httpx.post(f"{gw.v1}/chat/completions", headers=headers,
                      json={"model": model, "messages": MESSAGES, **kw}, timeout=30)


def test_virtual_keys_end_to_end(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                 db_url: str) -> None:
    gw = start(gateway_factory, upstream, db_url, ["--log-level", "debug"])
    assert chat(gw, {}).json()["error"]["code"] == "invalid_api_key"
    assert chat(gw, {"authorization": "Bearer sk-gw-nope"}).status_code == 401
    created = admin(gw, "POST", "keys", json={"alias": "svc", "models": ["priced", "gpt-4o-mini"]})
    assert created.status_code == 201
    secret, key_id = created.json()["key"], created.json()["id"]

    client = openai.OpenAI(base_url=gw.v1, api_key=secret, max_retries=0)
    out = client.chat.completions.create(model="priced", messages=MESSAGES)  # type: ignore[arg-type]
    assert out.choices[0].message.content == "The quick brown fox jumps"
    sent = upstream.requests[-1].headers
    assert sent["Authorization"] == f"Bearer {PROVIDER_SECRET}"  # the virtual key never goes upstream
    assert chat(gw, {"x-api-key": secret}).status_code == 200
    assert chat(gw, {"api-key": secret}).status_code == 200
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert denied.value.code == "model_not_allowed"

    assert admin(gw, "POST", f"keys/{key_id}/block").json()["blocked"] is True
    assert chat(gw, {"authorization": f"Bearer {secret}"}).json()["error"]["code"] == "key_blocked"
    admin(gw, "POST", f"keys/{key_id}/unblock")
    rotated = admin(gw, "POST", f"keys/{key_id}/rotate").json()
    assert rotated["id"] == key_id and rotated["key"] != secret
    assert chat(gw, {"authorization": f"Bearer {secret}"}).status_code == 401
    assert chat(gw, {"authorization": f"Bearer {rotated['key']}"}).status_code == 200
    expired = admin(gw, "POST", "keys", json={"expires_in_s": 0}).json()
    assert chat(gw, {"authorization": f"Bearer {expired['key']}"}).json()["error"]["code"] == "key_expired"
    assert admin(gw, "DELETE", f"keys/{key_id}").status_code == 200
    assert chat(gw, {"authorization": f"Bearer {rotated['key']}"}).status_code == 401
    assert chat(gw, {"authorization": f"Bearer {MASTER}"}).status_code == 200  # the master key may call too

    # At rest: hashes only. In the log (debug level): no key, master key or provider secret.
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM gw_keys"))]
        dump = repr(rows) + repr(list(conn.execute(text("SELECT * FROM gw_usage"))))
    engine.dispose()
    assert {r["key_hash"] for r in rows} == {hash_secret(expired["key"])}
    gw.stop()
    log = gw.log()
    for secret_text in (secret, rotated["key"], expired["key"], MASTER, PROVIDER_SECRET):
        assert secret_text not in dump
        assert secret_text not in log
    assert '"status":200' in log.replace(" ", "")  # the log did record the requests


def test_a_key_created_elsewhere_is_found_and_a_cli_block_reaches_the_gateway(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/gateway.db"
    gw = start(gateway_factory, upstream, db_url)
    created = cli("keys", "create", "--alias", "from-cli", "--models", "priced", "--database-url", db_url)
    secret = created.stdout.splitlines()[1]
    key_id = created.stdout.split()[2]
    assert chat(gw, {"authorization": f"Bearer {secret}"}).status_code == 200  # a cache miss, read once
    listed = cli("keys", "list", "--database-url", db_url).stdout
    assert key_id in listed and "from-cli" in listed and secret not in listed
    cli("keys", "block", key_id, "--database-url", db_url)
    codes = []
    for _ in range(40):  # the gateway re-reads stale keys (TTL 0.3 s) in the background
        codes.append(chat(gw, {"authorization": f"Bearer {secret}"}).status_code)
        if codes[-1] == 401:
            break
        time.sleep(0.05)
    assert codes[-1] == 401
    assert cli("keys", "delete", key_id, "--database-url", db_url).stdout.strip() == f"deleted key {key_id}"
    assert cli("keys", "delete", key_id, "--database-url", db_url, check=False).returncode == 1
    usage = cli("usage", "--group-by", "key", "--database-url", db_url).stdout
    lines = usage.splitlines()
    assert lines[0].split()[:3] == ["KEY", "TOTAL_REQUESTS", "PROMPT_TOKENS"]
    assert lines[-1].split()[:2] == ["TOTAL", str(len(codes) + 1)]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "llm_gateway", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


async def test_concurrent_requests_overshoot_a_budget_by_at_most_one(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str) -> None:
    gw = start(gateway_factory, upstream, db_url)
    budget = 0.2
    team = admin(gw, "POST", "teams", json={"id": "t-budget", "budget_usd": 10}).json()
    key = admin(gw, "POST", "keys", json={"budget_usd": budget, "team_id": team["id"]}).json()
    headers = {"authorization": f"Bearer {key['key']}"}
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(12):  # waves of concurrent requests until the budget refuses all of a wave
            wave = await asyncio.gather(*(client.post(f"{gw.v1}/chat/completions", headers=headers, json={
                "model": "slow-150", "messages": MESSAGES, "max_tokens": 5}) for _ in range(8)))
            statuses += [r.status_code for r in wave]
            if all(r.status_code == 429 for r in wave):
                assert {r.json()["error"]["code"] for r in wave} == {"budget_exceeded"}
                break
    assert statuses[-1] == 429
    ok = statuses.count(200)
    spent = ok * COST
    assert budget <= spent <= budget + COST, (ok, statuses)
    spend = admin(gw, "GET", "spend", params={"kind": "key"}).json()["data"]
    assert spend[0]["spent_usd"] == pytest.approx(spent) and spend[0]["reserved_usd"] == 0
    team_spend = admin(gw, "GET", "spend", params={"kind": "team"}).json()["data"]
    assert team_spend[0]["spent_usd"] == pytest.approx(spent)  # the team's budget counts its keys' spend

    # Spend survives a restart: it is loaded from the ledger for the budget's period.
    gw.stop()
    again = start(gateway_factory, upstream, db_url)
    assert chat(again, headers, model="slow-150").json()["error"]["code"] == "budget_exceeded"
    admin(again, "PATCH", f"keys/{key['id']}", json={"budget_usd": 100})
    assert chat(again, headers, model="slow-150").status_code == 200


def test_sqlite_ledger_file_is_readable_by_other_tools(tmp_path: Path, gateway_factory: Callable[..., GatewayProcess],
                                                        upstream: Upstream) -> None:
    db_url = f"sqlite:///{tmp_path}/gateway.db"
    gw = start(gateway_factory, upstream, db_url)
    key = admin(gw, "POST", "keys", json={"user_id": "u1"}).json()
    assert chat(gw, {"authorization": f"Bearer {key['key']}"}).status_code == 200
    gw.stop()
    with sqlite3.connect(tmp_path / "gateway.db") as conn:
        row = conn.execute("SELECT key_id, user_id, model, prompt_tokens, completion_tokens, cost_usd, status "
                           "FROM gw_usage").fetchone()
    assert row == (key["id"], "u1", "priced", 11, 5, pytest.approx(COST), 200)


def test_a_database_outage_does_not_lock_out_cached_keys(gateway_factory: Callable[..., GatewayProcess],
                                                         upstream: Upstream, db_url: str) -> None:
    gw = start(gateway_factory, upstream, db_url)
    key = admin(gw, "POST", "keys", json={}).json()
    headers = {"authorization": f"Bearer {key['key']}"}
    assert chat(gw, headers).status_code == 200
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE gw_keys RENAME TO gw_keys_away"))  # every key read fails from now on
    try:
        statuses = []
        deadline = time.monotonic() + 1.5  # five times the cache TTL: refreshes fail, the key keeps working
        while time.monotonic() < deadline:
            statuses.append(chat(gw, headers).status_code)
        assert set(statuses) == {200} and len(statuses) > 5
        unknown = chat(gw, {"authorization": "Bearer sk-gw-never-seen"})
        assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "service_unavailable"
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE gw_keys_away RENAME TO gw_keys"))
        engine.dispose()
    assert chat(gw, {"authorization": "Bearer sk-gw-never-seen"}).status_code == 401
    assert "key cache refresh failed" in gw.log()


def test_model_list_needs_a_key_and_shows_only_allowed_models(gateway_factory, upstream) -> None:  # type: ignore[no-untyped-def]
    import httpx

    config = {"auth": {"master_key": "sk-master-list"},
              "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["alpha", "beta"]}]}
    gw = gateway_factory(config=config)
    assert httpx.get(f"{gw.v1}/models").status_code == 401
    admin = {"authorization": "Bearer sk-master-list"}
    assert sorted(m["id"] for m in httpx.get(f"{gw.v1}/models", headers=admin).json()["data"]) == ["alpha", "beta"]
    created = httpx.post(f"{gw.url}/api/v1/keys", json={"alias": "only-beta", "models": ["beta"]}, headers=admin)
    assert created.status_code in (200, 201), created.text
    key = created.json()["key"]
    listed = httpx.get(f"{gw.v1}/models", headers={"authorization": f"Bearer {key}"}).json()["data"]
    assert [m["id"] for m in listed] == ["beta"]


def test_model_names_are_not_revealed_without_a_key(gateway_factory: Callable[..., GatewayProcess],
                                                    upstream: Upstream) -> None:
    """Unknown and known models look the same to a caller without a valid key: 401 first, 404 only after."""
    config = {"auth": {"master_key": MASTER},
              "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["alpha"]}]}
    gw = gateway_factory(config=config)
    seen = len(upstream.requests)
    for model in ("alpha", "no-such-model"):
        r = httpx.post(f"{gw.v1}/chat/completions", json={"model": model, "messages": MESSAGES})
        assert r.status_code == 401, (model, r.text)
        r = httpx.post(f"{gw.url}/v1/messages/count_tokens", json={"model": model, "messages": MESSAGES},
                       headers={"x-api-key": "sk-wrong"})
        assert r.status_code == 401, (model, r.text)
    r = httpx.post(f"{gw.v1}/chat/completions", json={"model": "no-such-model", "messages": MESSAGES},
                   headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(f"{gw.url}/v1/messages/count_tokens", json={"model": "alpha", "messages": MESSAGES},
                   headers={"x-api-key": MASTER})
    assert r.status_code == 200 and r.json()["input_tokens"] > 0
    assert len(upstream.requests) == seen
