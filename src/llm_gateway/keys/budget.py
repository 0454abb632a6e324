"""Budgets per key, user and team: spend kept in memory so the check is a dict lookup, with in-flight reserves.

A request is admitted while `spent + reserved < budget`, and reserves an estimate (at least its cost) until it
settles with the real cost. So concurrent requests overshoot a budget by at most the one request admitted last.
Spend is loaded from the ledger at start and every 30 s, so replicas see each other's spend with that delay;
with Redis configured, keys/shared_budget.py makes the admission decision across replicas instead.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterable

from llm_gateway.errors import RateLimited


class BudgetExceeded(RateLimited):
    type = "budget_exceeded"
    code = "budget_exceeded"


def window(period: str, now: float) -> tuple[float, float]:
    """Start and end (epoch seconds, UTC) of the budget period containing `now`."""
    if period == "total":
        return 0.0, float("inf")
    t = time.gmtime(now)
    if period == "daily":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        return float(start), float(start + 86400)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(start), float(calendar.timegm((year, month, 1, 0, 0, 0)))


class Budget:
    __slots__ = ("end", "kind", "limit", "owner", "period", "reserved", "spent", "start")

    def __init__(self, kind: str, owner: str, limit: float, period: str, now: float) -> None:
        self.kind = kind
        self.owner = owner
        self.limit = limit
        self.period = period
        self.spent = 0.0
        self.reserved = 0.0
        self.start, self.end = window(period, now)

    def roll(self, now: float) -> None:
        if now >= self.end:
            self.start, self.end = window(self.period, now)
            self.spent = 0.0


def exceeded(budget: Budget, now: float) -> BudgetExceeded:
    return BudgetExceeded(f"the {budget.kind}'s budget of ${budget.limit:g} ({budget.period}) is spent",
                          headers={"retry-after": str(max(1, int(budget.end - now)))}
                          if budget.end != float("inf") else None)


Entity = tuple[str, str]  # ("key" | "user" | "team", id)


class BudgetTracker:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.budgets: dict[Entity, Budget] = {}

    def configure(self, kind: str, owner: str, limit: float | None, period: str) -> Budget | None:
        """Set (or clear, with None) an entity's budget, keeping its spend when only the amount changes. Returns
        a budget made anew (none before, or another period): it knows nothing yet of what was spent in it."""
        entity = (kind, owner)
        if limit is None:
            self.budgets.pop(entity, None)
            return None
        current = self.budgets.get(entity)
        if current is not None and current.period == period:
            current.limit = limit
            return None
        budget = self.budgets[entity] = Budget(kind, owner, limit, period, self.clock())
        return budget

    def set_spent(self, kind: str, owner: str, spent: float) -> None:
        """Spend read from the ledger: it includes other replicas' flushed spend, this replica's memory includes
        its own unflushed spend, so the larger of the two is the better lower bound."""
        budget = self.budgets.get((kind, owner))
        if budget is not None:
            budget.roll(self.clock())
            budget.spent = max(budget.spent, spent)

    def applicable(self, entities: Iterable[Entity]) -> list[Budget]:
        found = []
        budgets = self.budgets
        for entity in entities:
            budget = budgets.get(entity)
            if budget is not None:
                found.append(budget)
        return found

    def reserve(self, budgets: list[Budget], estimate: float) -> None:
        """Admit or raise BudgetExceeded; on admit, `estimate` is held on every budget until `settle`."""
        now = self.clock()
        for budget in budgets:
            budget.roll(now)
            if budget.spent + budget.reserved >= budget.limit:
                raise exceeded(budget, now)
        self.hold(budgets, estimate)

    @staticmethod
    def hold(budgets: list[Budget], estimate: float) -> None:
        """Hold `estimate` with no check (Redis admitted the request: keys/shared_budget.py)."""
        for budget in budgets:
            budget.reserved += estimate

    def settle(self, budgets: list[Budget], estimate: float, cost: float) -> None:
        now = self.clock()
        for budget in budgets:
            budget.reserved = max(0.0, budget.reserved - estimate)
            budget.roll(now)
            budget.spent += cost

    def add(self, entities: Iterable[Entity], cost: float) -> None:
        """Spend that was not reserved (e.g. a key whose budget was set while its request was in flight)."""
        if cost:
            self.settle(self.applicable(entities), 0.0, cost)

    def snapshot(self) -> list[dict[str, object]]:
        return [{"kind": b.kind, "id": b.owner, "budget_usd": b.limit, "period": b.period,
                 "spent_usd": round(b.spent, 9), "reserved_usd": round(b.reserved, 9),
                 "period_start": int(b.start * 1000)} for b in self.budgets.values()]
