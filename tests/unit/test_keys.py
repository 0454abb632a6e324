"""Key records, the key cache (stale serving, database outages), budgets and the auth stage, in-process."""

from __future__ import annotations

import asyncio
import calendar
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from llm_gateway.db.engine import make_engine, upgrade
from llm_gateway.db.tables import keys
from llm_gateway.errors import Forbidden, ServiceUnavailable, Unauthorized
from llm_gateway.keys.auth import AuthStage, client_secret
from llm_gateway.keys.budget import BudgetExceeded, BudgetTracker, window
from llm_gateway.keys.cache import MISSING, KeyCache
from llm_gateway.keys.model import MASTER, hash_secret
from llm_gateway.keys.store import Store
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.server.http import Request
from llm_gateway.usage.pricing import Price, PriceBook

# USD per 1M tokens, as the budget estimates below assume
PRICES = PriceBook(None, {"gpt-4o-mini": Price.per_million({"input": 0.15, "output": 0.6})})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path}/keys.db")
    upgrade(engine)
    return Store(engine)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ctx_for(secret: str = "", model: str = "gpt-4o-mini", header: str = "authorization",
            body: dict[str, Any] | None = None) -> RequestContext:
    headers = {header: (f"Bearer {secret}" if header == "authorization" else secret)} if secret else {}
    request = Request("POST", "/v1/chat/completions", "", headers, b'{"model": "x"}', "127.0.0.1")
    ctx = RequestContext(request, "req-1", "chat/completions")
    ctx.model = model
    ctx.body = body or {}
    return ctx


def test_only_the_hash_is_stored(store: Store) -> None:
    secret, key = store.create_key({"alias": "svc"})
    assert secret.startswith("sk-gw-") and len(secret) > 40
    with store.engine.connect() as conn:
        row = conn.execute(select(keys)).one()._mapping
    assert row["key_hash"] == hash_secret(secret)
    assert secret not in repr(dict(row))
    assert "key" not in key.public() and "key_hash" not in key.public()


def test_client_secret_reads_the_three_headers() -> None:
    assert client_secret({"authorization": "Bearer abc"}) == "abc"
    assert client_secret({"authorization": "bearer  abc "}) == "abc"
    assert client_secret({"x-api-key": "anthropic"}) == "anthropic"
    assert client_secret({"api-key": "azure"}) == "azure"
    assert client_secret({"authorization": "Basic xyz"}) == ""


async def test_cache_serves_stale_keys_through_a_database_outage(store: Store) -> None:
    _, key = store.create_key({"alias": "a"})
    clock = Clock()
    cache = KeyCache(store, ttl=5.0, clock=clock)
    await cache.start()
    try:
        assert cache.get(key.key_hash) == key
        assert cache.get(hash_secret("unknown")) is MISSING

        def broken(*_: Any) -> Any:
            raise OSError("database down")

        cache._read = broken  # type: ignore[method-assign]
        store.key_by_hash = broken  # type: ignore[method-assign]
        clock.now += 60  # every entry is stale now: it is still served while refreshes fail
        for _ in range(3):
            assert cache.get(key.key_hash) == key
            await asyncio.sleep(0.08)
        with pytest.raises(ServiceUnavailable):  # an unknown key cannot be checked: 503, not 401
            await cache.fetch(hash_secret("other"))
    finally:
        await cache.stop()


async def test_stale_entries_are_refreshed_in_the_background(store: Store) -> None:
    _, key = store.create_key({"alias": "a"})
    clock = Clock()
    cache = KeyCache(store, ttl=5.0, clock=clock)
    await cache.start()
    try:
        store.update_key(key.id, {"blocked": True})  # e.g. the CLI or another replica
        assert cache.get(key.key_hash).blocked is False  # type: ignore[union-attr]
        clock.now += 10
        cache.get(key.key_hash)  # stale: schedules a re-read
        for _ in range(50):
            await asyncio.sleep(0.02)
            entry = cache.get(key.key_hash)
            if entry is not None and entry.blocked:  # type: ignore[attr-defined]
                break
        assert cache.get(key.key_hash).blocked is True  # type: ignore[union-attr]
        store.delete_key(key.id)
        clock.now += 10
        cache.get(key.key_hash)
        for _ in range(50):
            await asyncio.sleep(0.02)
            if cache.get(key.key_hash) is None:
                break
        assert cache.get(key.key_hash) is None
    finally:
        await cache.stop()


def test_budget_windows() -> None:
    mid_march = calendar.timegm((2026, 3, 15, 13, 30, 0))
    assert window("daily", mid_march) == (calendar.timegm((2026, 3, 15, 0, 0, 0)),
                                          calendar.timegm((2026, 3, 16, 0, 0, 0)))
    assert window("monthly", mid_march) == (calendar.timegm((2026, 3, 1, 0, 0, 0)),
                                            calendar.timegm((2026, 4, 1, 0, 0, 0)))
    december = calendar.timegm((2026, 12, 31, 23, 0, 0))
    assert window("monthly", december)[1] == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert window("total", mid_march) == (0.0, float("inf"))


def test_budget_reserves_in_flight_and_rolls_over() -> None:
    clock = Clock(calendar.timegm((2026, 3, 15, 23, 59, 0)))
    tracker = BudgetTracker(clock)
    tracker.configure("key", "k", 1.0, "daily")
    budgets = tracker.applicable([("key", "k"), ("user", "nobody")])
    assert len(budgets) == 1
    tracker.reserve(budgets, 0.6)
    tracker.reserve(budgets, 0.6)  # 0.6 reserved < 1.0: admitted
    with pytest.raises(BudgetExceeded) as err:
        tracker.reserve(budgets, 0.6)  # 1.2 reserved: refused while those two are in flight
    assert err.value.status == 429 and err.value.code == "budget_exceeded"
    assert err.value.headers["retry-after"] == "60"
    tracker.settle(budgets, 0.6, 0.5)
    tracker.settle(budgets, 0.6, 0.5)
    assert budgets[0].spent == pytest.approx(1.0) and budgets[0].reserved == 0.0
    with pytest.raises(BudgetExceeded):
        tracker.reserve(budgets, 0.1)
    clock.now += 120  # the next day
    tracker.reserve(budgets, 0.1)
    assert budgets[0].spent == 0.0


async def test_auth_stage(store: Store) -> None:
    secret, key = store.create_key({"alias": "a", "models": ["gpt-4o-mini"], "budget_usd": 0.001,
                                    "user_id": "alice", "team_id": "t1"})
    blocked_secret, _ = store.create_key({"blocked": True})
    expired_secret, _ = store.create_key({"expires_at": 1})
    cache = KeyCache(store)
    await cache.start()
    tracker = BudgetTracker()
    tracker.configure("key", key.id, 0.001, "total")
    stage = AuthStage("master-secret", cache, tracker, PRICES)
    try:
        ctx = ctx_for("master-secret")
        await stage.admit(ctx)
        assert ctx.key is MASTER
        codes = []
        for bad in (ctx_for(), ctx_for("sk-gw-wrong"), ctx_for(blocked_secret), ctx_for(expired_secret)):
            with pytest.raises(Unauthorized) as err:
                await stage.admit(bad)
            codes.append(err.value.code)
        assert codes == ["invalid_api_key", "invalid_api_key", "key_blocked", "key_expired"]
        with pytest.raises(Forbidden):
            await stage.admit(ctx_for(secret, model="gpt-4o"))
        ctx = ctx_for(secret, header="x-api-key", body={"max_tokens": 100})
        await stage.admit(ctx)
        assert ctx.key.id == key.id and ctx.user == "alice" and ctx.team == "t1"
        held = tracker.budgets[("key", key.id)].reserved
        # an upper bound: every request byte a token at the input price, plus max_tokens at the output price
        assert held == pytest.approx(14 * 0.15e-6 + 100 * 0.6e-6)
        ctx.cost = 0.002
        stage.settle(ctx)
        assert tracker.budgets[("key", key.id)].spent == pytest.approx(0.002)
        with pytest.raises(BudgetExceeded):
            await stage.admit(ctx_for(secret, header="api-key"))
    finally:
        await cache.stop()


async def test_open_gateway_admits_everything(store: Store) -> None:
    stage = AuthStage(None, KeyCache(store), BudgetTracker(), PRICES)
    ctx = ctx_for()
    await stage.admit(ctx)
    assert ctx.key is None


async def test_user_and_team_budgets_apply_to_their_keys(store: Store) -> None:
    secret, key = store.create_key({"user_id": "carol", "team_id": "ops"})
    other_secret, _ = store.create_key({"team_id": "ops"})
    cache = KeyCache(store)
    await cache.start()
    tracker = BudgetTracker()
    tracker.configure("user", "carol", 1.0, "monthly")
    tracker.configure("team", "ops", 3.0, "daily")
    stage = AuthStage("m", cache, tracker, PRICES)
    try:
        ctx = ctx_for(secret)
        await stage.admit(ctx)
        ctx.cost = 1.0
        stage.settle(ctx)
        with pytest.raises(BudgetExceeded, match="user's budget"):
            await stage.admit(ctx_for(secret))
        for _ in range(2):  # the team's other key spends the rest of the team's budget
            ctx = ctx_for(other_secret)
            await stage.admit(ctx)
            ctx.cost = 1.0
            stage.settle(ctx)
        with pytest.raises(BudgetExceeded, match="team's budget"):
            await stage.admit(ctx_for(other_secret))
        assert tracker.budgets[("team", "ops")].spent == 3.0
        assert ("key", key.id) not in tracker.budgets  # the key itself has no budget
    finally:
        await cache.stop()


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from llm_gateway.db.engine import HEAD_REVISION, MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
