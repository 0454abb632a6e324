"""Accounts: the database, key cache, budgets, prices and ledger behind one start/stop, and their stages."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Engine

from llm_gateway.db.engine import Timeouts, check_schema, make_engine, upgrade_in_child
from llm_gateway.keys.auth import AuthStage
from llm_gateway.keys.budget import Budget, BudgetTracker, window
from llm_gateway.keys.cache import KeyCache
from llm_gateway.keys.model import KeyRecord, TeamRecord, UserRecord
from llm_gateway.keys.shared_budget import SharedBudgets
from llm_gateway.keys.store import Store
from llm_gateway.routing.access import Policy
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
    policy: Policy
    _reload: asyncio.Task[None] | None = None
    # spend loads of budgets made after start (a budget set, or given another period, on an entity that spent)
    _loads: set[asyncio.Task[None]] = field(default_factory=set)
    _loaded_all: bool = False  # until the first reload loads every budget's spend at once
    # each team's `guardrails`, for the guardrail policy (read on the request path, never queried there)
    team_guardrails: dict[str, tuple[str, ...]] = field(default_factory=dict)

    async def start(self) -> None:
        if self.config.database.migrate_on_start:
            await asyncio.to_thread(upgrade_in_child, self.engine)
        else:
            await asyncio.to_thread(check_schema, self.engine)
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
        if self.auth_stage.shared is not None:
            await self.auth_stage.shared.close()
        await self.ledger.stop(self.config.server.shutdown_grace_s or 5.0)
        self.ledger.engine.dispose()
        self.engine.dispose()

    # -- changes the admin API makes take effect here at once
    def key_changed(self, key: KeyRecord) -> None:
        self._configure("key", key.id, key.budget_usd, key.budget_period)

    def _configure(self, kind: str, owner: str, limit: float | None, period: str) -> None:
        budget = self.budgets.configure(kind, owner, limit, period)
        if budget is None or not self._loaded_all:
            return
        # A new budget on an entity that may have spent in its period already (a budget set after the fact, a
        # daily one made monthly): its spend is read from the ledger now, not at the next reload.
        try:
            task = asyncio.get_running_loop().create_task(self._load_spend_of(budget))
        except RuntimeError:  # no event loop (a synchronous caller): the next reload reads it
            return
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _load_spend_of(self, budget: Budget) -> None:
        start_ms = int(budget.start * 1000)

        def written() -> float:
            return spend_since(self.engine, budget.kind, start_ms, budget.owner).get(budget.owner, 0.0)
        try:
            total = await self.ledger.spend(written, f"{budget.kind}_id", budget.owner, start_ms)
        except Exception as exc:
            log.warning("loading the spend of %s %s failed (%s); it is read again at the next budget reload",
                        budget.kind, budget.owner, type(exc).__name__)
            return
        self.budgets.set_spent(budget.kind, budget.owner, total)
        if self.auth_stage.shared is not None:
            await self.auth_stage.shared.seed([budget])

    async def budgets_loaded(self) -> None:
        """Wait for the spend of the budgets just set: the admin API answers once they bind."""
        if self._loads:
            await asyncio.gather(*self._loads, return_exceptions=True)

    def put_key(self, key: KeyRecord, old_hash: str | None = None) -> None:
        if old_hash is not None and old_hash != key.key_hash:
            self.cache.evict(old_hash)
        self.cache.put(key)

    def user_changed(self, user: UserRecord) -> None:
        self._configure("user", user.id, user.budget_usd, user.budget_period)

    def team_changed(self, team: TeamRecord) -> None:
        self._configure("team", team.id, team.budget_usd, team.budget_period)
        self._team_permissions(team)
        if team.guardrails:
            self.team_guardrails[team.id] = team.guardrails
        else:
            self.team_guardrails.pop(team.id, None)

    def _team_permissions(self, team: TeamRecord) -> None:
        """Keep the policy's copy of what the team allows its keys (read on the request path, never queried)."""
        teams = self.policy.teams
        allowed = (team.allow_overrides, team.allow_passthrough)
        if teams.get(team.id, (False, False)) == allowed:
            return
        if any(allowed):
            teams[team.id] = allowed
        else:
            teams.pop(team.id, None)
        self.policy.clear()

    async def reload_budgets(self, load_spend: bool = False) -> None:
        users, teams = await asyncio.to_thread(self.store.budgeted)
        for user in users:
            self.user_changed(user)
        for team in teams:
            self.team_changed(team)
        guarded = await asyncio.to_thread(self.store.guarded_teams)  # changed on another replica too
        lists = {t.id: t.guardrails for t in guarded if t.guardrails}
        if lists != self.team_guardrails:
            self.team_guardrails.clear()
            self.team_guardrails.update(lists)
        permitted = await asyncio.to_thread(self.store.permitted_teams)
        for gone in set(self.policy.teams) - {t.id for t in permitted}:  # changed on another replica
            self._team_permissions(TeamRecord(gone))
        for team in permitted:
            self._team_permissions(team)
        if load_spend:
            await asyncio.to_thread(self._load_spend)
            self._loaded_all = True
            if self.auth_stage.shared is not None:
                await self.auth_stage.shared.seed(list(self.budgets.budgets.values()))

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


def build_accounts(config: GatewayConfig, registry: Registry, policy: Policy) -> Accounts:
    db = config.database
    timeouts = Timeouts(db.connect_timeout_s, db.statement_timeout_s)
    engine = make_engine(db.url, timeouts)
    ledger_engine = engine
    if engine.dialect.name == "postgresql":
        # Its own two connections (one per writer thread), with no ping on checkout: the ledger's watchdog shuts
        # down a connection that goes silent, which it can only do for the connection it holds.
        ledger_engine = make_engine(db.url, timeouts, pre_ping=False, pool_size=2)
    store = Store(engine)
    auth = config.auth
    cache = KeyCache(store, ttl=auth.key_cache_ttl_s)
    budgets = BudgetTracker()
    prices = book_from_config(config, GenaiPrices())
    unpriced = registry.counter("llm_gateway_unpriced_requests_total",
                                "Requests with usage whose price is unknown, recorded at $0", ("model",))
    prices.on_unpriced = lambda model: unpriced.inc((model,))
    ledger = Ledger(ledger_engine, registry, db.ledger_batch_size, db.ledger_flush_interval_s,
                    write_timeout=db.ledger_write_timeout_s)
    auth_stage = AuthStage(auth.master_key, cache, budgets, prices, auth.budget_output_tokens, policy)
    if config.redis.url:
        auth_stage.shared = SharedBudgets(config.redis.url, config.redis.pool_size,
                                          config.limits.redis_prefix + "budget:", uuid.uuid4().hex[:12],
                                          config.limits.redis_timeout_s, config.limits.retry_backend_after_s,
                                          redis=config.redis)
    return Accounts(config, engine, store, cache, budgets, prices, ledger, auth_stage, CostStage(prices),
                    LedgerStage(ledger), policy)
