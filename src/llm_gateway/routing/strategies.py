"""Load-balancing strategies: the order in which a route's deployments are tried."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llm_gateway.routing.catalog import Deployment


class Strategy(Protocol):
    name: str

    def order(self, deployments: list[Deployment]) -> list[Deployment]:
        """All deployments, best first; the caller tries them in this order."""


class Weighted:
    """Weighted random: the first pick is proportional to `weight`; the rest follow in config order."""

    name = "weighted"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def order(self, deployments: list[Deployment]) -> list[Deployment]:
        if len(deployments) == 1:
            return deployments
        total = 0.0
        for d in deployments:
            total += d.weight
        point = self.rng.random() * total
        for i, d in enumerate(deployments):
            point -= d.weight
            if point < 0:
                return [d, *deployments[:i], *deployments[i + 1:]] if i else deployments
        return [deployments[-1], *deployments[:-1]]


class _Ranked:
    """Lowest `rank` first; ties are broken at random so load spreads evenly."""

    name = ""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    @staticmethod
    def rank(d: Deployment) -> float:
        raise NotImplementedError

    def order(self, deployments: list[Deployment]) -> list[Deployment]:
        if len(deployments) == 1:
            return deployments
        rand, rank = self.rng.random, self.rank
        return sorted(deployments, key=lambda d: (rank(d), rand()))


class LeastInFlight(_Ranked):
    """Fewest requests in flight relative to weight."""

    name = "least-in-flight"

    @staticmethod
    def rank(d: Deployment) -> float:
        return d.in_flight / d.weight


class LowestLatency(_Ranked):
    """Lowest moving average (EWMA) of time to first token; unmeasured deployments go first to get measured."""

    name = "lowest-latency"

    @staticmethod
    def rank(d: Deployment) -> float:
        return d.ewma_ttft


class CostOrdered:
    """Cheapest first (`cost` per 1M tokens; unpriced last), config order among equals."""

    name = "cost"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng

    def order(self, deployments: list[Deployment]) -> list[Deployment]:
        if len(deployments) == 1:
            return deployments
        return sorted(deployments, key=lambda d: d.cost if d.cost is not None else float("inf"))


STRATEGIES: dict[str, type[Weighted | LeastInFlight | LowestLatency | CostOrdered]] = {
    "weighted": Weighted, "least-in-flight": LeastInFlight, "lowest-latency": LowestLatency, "cost": CostOrdered,
}
