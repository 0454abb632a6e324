"""The model catalog: which deployments serve a model name clients send, and each deployment's live state."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_gateway.providers.base import Provider
from llm_gateway.providers.http import Timeouts
from llm_gateway.routing.strategies import STRATEGIES, Strategy, Weighted
from llm_gateway.settings import HedgeConfig, ModelGroupConfig, RoutingConfig, TimeoutsConfig

_EWMA_ALPHA = 0.2
_TTFT_SAMPLES = 64
_MAX_DYNAMIC_ROUTES = 4096


@dataclass(slots=True, eq=False)
class Deployment:
    """One provider serving one upstream model, with the live numbers routing decides on."""

    provider: Provider
    model: str
    weight: float = 1.0
    id: str = ""
    cost: float | None = None
    max_in_flight: int | None = None
    timeouts: Timeouts | None = None
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    ewma_ttft: float = 0.0
    ttfts: list[float] = field(default_factory=list)
    ttft_next: int = 0
    # health, owned by routing.cooldown.Cooldowns
    fails_in_row: int = 0
    cooldown_until: float = 0.0
    cooldown_len: float = 0.0
    probing: bool = False
    probe_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"{self.provider.name}/{self.model}"
        if self.timeouts is None:
            self.timeouts = self.provider.timeouts

    @property
    def name(self) -> str:
        return self.id

    def observe_ttft(self, seconds: float) -> None:
        self.ewma_ttft = seconds if not self.ewma_ttft else self.ewma_ttft + _EWMA_ALPHA * (seconds - self.ewma_ttft)
        if len(self.ttfts) < _TTFT_SAMPLES:
            self.ttfts.append(seconds)
        else:
            self.ttfts[self.ttft_next] = seconds
            self.ttft_next = (self.ttft_next + 1) % _TTFT_SAMPLES

    def p95_ttft(self, min_samples: int = 10) -> float | None:
        """The 95th percentile of recent times to first token; None until enough were seen."""
        if len(self.ttfts) < min_samples:
            return None
        ordered = sorted(self.ttfts)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


@dataclass(slots=True, eq=False)
class Route:
    """A model name clients use, and where it can go: its deployments, then fallbacks in order."""

    name: str
    deployments: list[Deployment]
    fallbacks: list[str] = field(default_factory=list)  # other model names (aliases), tried in order
    context_window_fallbacks: list[str] = field(default_factory=list)
    chain: list[Route] = field(default_factory=list)  # the seeds' fallbackChain, one route per provider
    strategy: Strategy = field(default_factory=Weighted)
    retries: int | None = None  # None: the routing default
    hedge: HedgeConfig | None = None
    partial: bool = False  # the part of a route one caller may reach (routing.access): not all its deployments

    @property
    def simple(self) -> bool:
        """One deployment and nowhere else to go: dispatch takes its straight path."""
        return len(self.deployments) == 1 and not self.fallbacks and not self.chain and \
            not self.context_window_fallbacks

    def pick(self) -> Deployment:
        return self.strategy.order(self.deployments)[0]


def _timeouts(config: TimeoutsConfig | None) -> Timeouts | None:
    if config is None:
        return None
    return Timeouts(connect=config.connect, first_byte=config.first_token, idle=config.idle, total=config.total)


def _provider_retries(deployments: list[Deployment]) -> int | None:
    """Providers' own `max_retries` (the Go seed's maxRetries): the most any of the route's providers allows."""
    given = [d.provider.config.max_retries for d in deployments if d.provider.config.max_retries is not None]
    return max(given) if given else None


class Catalog:
    """Resolves model names: aliases from `models:`, each provider's listed models, then the default provider
    (or wildcards). Deployments are shared between the routes that name the same one, so their state is too."""

    def __init__(self, providers: dict[str, Provider], groups: dict[str, ModelGroupConfig],
                 routing: RoutingConfig | None = None) -> None:
        self.providers = providers
        self.routing = routing or RoutingConfig.model_validate({})
        self.deployments: dict[str, Deployment] = {}
        self.routes: dict[str, Route] = {}
        self.wildcards: list[Provider] = []
        self._dynamic: dict[str, Route] = {}
        for provider in providers.values():
            for public, upstream in provider.public_models():
                if public == "*":
                    self.wildcards.append(provider)
                    continue
                route = self.routes.setdefault(public, Route(public, []))
                route.deployments.append(self.deployment(provider, upstream))
        for route in self.routes.values():
            route.chain = self._chain(route.name, {d.provider.name for d in route.deployments})
            route.retries = _provider_retries(route.deployments)
        for alias, group in groups.items():
            deps = [self.deployment(providers[d.provider], d.model, d.weight, d.name, d.cost, d.max_in_flight,
                                    _timeouts(d.timeouts)) for d in group.deployments]
            self.routes[alias] = Route(alias, deps, list(group.fallbacks), list(group.context_window_fallbacks),
                                       strategy=STRATEGIES[group.strategy](), retries=group.retries,
                                       hedge=group.hedge)
        self._configured = frozenset(self.deployments)

    def deployment(self, provider: Provider, model: str, weight: float = 1.0, name: str | None = None,
                   cost: float | None = None, max_in_flight: int | None = None,
                   timeouts: Timeouts | None = None) -> Deployment:
        """The deployment with this id, created on first use (state is per deployment, not per route)."""
        key = name or f"{provider.name}/{model}"
        dep = self.deployments.get(key)
        if dep is None:
            dep = Deployment(provider, model, weight, key, cost, max_in_flight, timeouts)
            self.deployments[key] = dep
        return dep

    def mapped(self, model: str, provider: str) -> str:
        """The name `provider` knows `model` by (the seeds' modelMappings)."""
        return self.routing.model_mappings.get(model, {}).get(provider, model)

    def _chain(self, model: str, exclude: set[str]) -> list[Route]:
        out = []
        for name in self.routing.fallback_chain:
            if name in exclude:
                continue
            provider = self.providers[name]
            dep = self.deployment(provider, self.mapped(model, name))
            out.append(Route(f"{model}@{name}", [dep]))
        return out

    def resolve(self, model: str) -> Route | None:
        route = self.routes.get(model)
        if route is not None:
            return route
        route = self._dynamic.get(model)
        if route is not None:
            return route
        prefix, sep, rest = model.partition("/")
        if sep and rest and prefix in self.providers:
            route = Route(model, [self.deployment(self.providers[prefix], rest)])
        elif (name := self.routing.model_targets.get(model) or self.routing.default_provider) is not None:
            route = Route(model, [self.deployment(self.providers[name], self.mapped(model, name))],
                          chain=self._chain(model, {name}), retries=self.providers[name].config.max_retries)
        elif self.wildcards:
            provider = self.wildcards[0]
            route = Route(model, [self.deployment(provider, self.mapped(model, provider.name))],
                          chain=self._chain(model, {provider.name}))
        else:
            return None
        if len(self._dynamic) >= _MAX_DYNAMIC_ROUTES:  # clients choose these names: keep the memory bounded
            self._dynamic.clear()
            self.deployments = {k: d for k, d in self.deployments.items()
                                if k in self._configured or d.in_flight or d.cooldown_until}
        self._dynamic[model] = route
        return route

    def pinned(self, route: Route, provider: str) -> Route | None:
        """The route restricted to one provider (the `provider` request option); None if it is unknown."""
        deps = [d for d in route.deployments if d.provider.name == provider]
        if deps:
            return Route(route.name, deps, strategy=route.strategy, retries=route.retries, hedge=route.hedge)
        target = self.providers.get(provider)
        if target is None:
            return None
        return Route(route.name, [self.deployment(target, self.mapped(route.name, provider))], retries=route.retries)

    @property
    def passthrough(self) -> Provider | None:
        """The provider that takes any other /v1/* path, when the gateway fronts one such upstream."""
        for provider in self.wildcards:
            if provider.passthrough:
                return provider
        return None

    def passthrough_route(self, model: str) -> Route | None:
        provider = self.passthrough
        return Route(model, [Deployment(provider, model)]) if provider is not None else None

    def listed(self) -> list[tuple[str, str]]:
        """(model name, owner) of every named model, aliases included."""
        out = []
        for name, route in self.routes.items():
            owners = sorted({d.provider.name for d in route.deployments})
            out.append((name, owners[0] if len(owners) == 1 else "llm-gateway"))
        return out
