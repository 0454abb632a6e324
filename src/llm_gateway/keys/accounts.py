"""Accounts: the database, key cache, budgets, prices and ledger behind one start/stop, and their stages."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from llm_gateway.db.engine import make_engine, upgrade_in_child
from llm_gateway.keys.auth import AuthStage
from llm_gateway.keys.budget import BudgetTracker, window
from llm_gateway.keys.cache import KeyCache
from llm_gateway.keys.model import KeyRecord, TeamRecord, UserRecord
from llm_gateway.keys.store import Store
from llm_gateway.settings import GatewayConfig
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.usage.cost import CostStage
from llm_gateway.usage.ledger import Ledger, LedgerStage
from llm_gateway.usage.price_db import GenaiPrices
from llm_gateway.usage.pricing import PriceBook, book_from_config
from llm_gateway.usage.report import spend_since

log = logging.getLogger("llm_gateway.keys")
_RELOAD_S = 30.0


@dataclass
class Accounts:
    config: GatewayConfig
    engine: Engine
    store: Store
    cache: KeyCache
    budgets: BudgetTracker
    prices: PriceBook
    ledger: Ledger
    auth_stage: AuthStage
    cost_stage: CostStage
    ledger_stage: LedgerStage
    _reload: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(upgrade_in_child, self.engine)
        self.cache.on_change.append(self.key_changed)
        await self.cache.start()
        await self.reload_budgets(load_spend=True)
        await self.ledger.start()
        self._reload = asyncio.create_task(self._reload_loop(), name="budget-reload")

    async def stop(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)
        await self.cache.stop()
        await self.ledger.stop(self.config.server.shutdown_grace_s or 5.0)
        self.engine.dispose()

    # -- changes the admin API makes take effect here at once
    def key_changed(self, key: KeyRecord) -> None:
        self.budgets.configure("key", key.id, key.budget_usd, key.budget_period)

    def put_key(self, key: KeyRecord, old_hash: str | None = None) -> None:
        if old_hash is not None and old_hash != key.key_hash:
            self.cache.evict(old_hash)
        self.cache.put(key)

    def user_changed(self, user: UserRecord) -> None:
        self.budgets.configure("user", user.id, user.budget_usd, user.budget_period)

    def team_changed(self, team: TeamRecord) -> None:
        self.budgets.configure("team", team.id, team.budget_usd, team.budget_period)

    async def reload_budgets(self, load_spend: bool = False) -> None:
        users, teams = await asyncio.to_thread(self.store.budgeted)
        for user in users:
            self.user_changed(user)
        for team in teams:
            self.team_changed(team)
        if load_spend:
            await asyncio.to_thread(self._load_spend)

    def _load_spend(self) -> None:
        """Each budget's spend in its current period, from the ledger (one query per kind and period)."""
        by_kind: dict[tuple[str, str], list[str]] = {}
        for (kind, owner), budget in self.budgets.budgets.items():
            by_kind.setdefault((kind, budget.period), []).append(owner)
        now = self.budgets.clock()
        for (kind, period), owners in by_kind.items():
            start_ms = int(window(period, now)[0] * 1000)
            spent = spend_since(self.engine, kind, start_ms)
            for owner in owners:
                self.budgets.set_spent(kind, owner, spent.get(owner, 0.0))

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(_RELOAD_S)
            try:
                await self.reload_budgets(load_spend=True)
            except Exception as exc:
                log.warning("budget reload failed (%s); keeping the budgets in memory", type(exc).__name__)


def build_accounts(config: GatewayConfig, registry: Registry) -> Accounts:
    engine = make_engine(config.database.url)
    store = Store(engine)
    auth = config.auth
    cache = KeyCache(store, ttl=auth.key_cache_ttl_s)
    budgets = BudgetTracker()
    prices = book_from_config(config, GenaiPrices())
    unpriced = registry.counter("llm_gateway_unpriced_requests_total",
                                "Requests with usage whose price is unknown, recorded at $0", ("model",))
    prices.on_unpriced = lambda model: unpriced.inc((model,))
    ledger = Ledger(engine, registry, config.database.ledger_batch_size, config.database.ledger_flush_interval_s)
    return Accounts(config, engine, store, cache, budgets, prices, ledger,
                    AuthStage(auth.master_key, cache, budgets, prices, auth.budget_output_tokens),
                    CostStage(prices), LedgerStage(ledger))
