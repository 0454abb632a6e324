"""The model catalog: which deployments serve a model name clients send."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from llm_gateway.providers.base import Provider
from llm_gateway.settings import ModelGroupConfig


@dataclass(slots=True)
class Deployment:
    """One provider serving one upstream model."""

    provider: Provider
    model: str
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.provider.name}/{self.model}"


@dataclass(slots=True)
class Route:
    """A model name clients use, and where it can go."""

    name: str
    deployments: list[Deployment]
    fallbacks: list[str] = field(default_factory=list)

    def pick(self) -> Deployment:
        deps = self.deployments
        if len(deps) == 1:
            return deps[0]
        return random.choices(deps, weights=[d.weight for d in deps])[0]


class Catalog:
    """Resolves model names: aliases from `models:`, each provider's listed models, then wildcards."""

    def __init__(self, providers: dict[str, Provider], groups: dict[str, ModelGroupConfig]) -> None:
        self.providers = providers
        self.routes: dict[str, Route] = {}
        self.wildcards: list[Provider] = []
        for provider in providers.values():
            for public, upstream in provider.public_models():
                if public == "*":
                    self.wildcards.append(provider)
                    continue
                route = self.routes.setdefault(public, Route(public, []))
                route.deployments.append(Deployment(provider, upstream))
        for alias, group in groups.items():
            deps = [Deployment(providers[d.provider], d.model, d.weight) for d in group.deployments]
            self.routes[alias] = Route(alias, deps, list(group.fallbacks))

    def resolve(self, model: str) -> Route | None:
        route = self.routes.get(model)
        if route is not None:
            return route
        prefix, sep, rest = model.partition("/")
        if sep and rest and prefix in self.providers:
            return Route(model, [Deployment(self.providers[prefix], rest)])
        if self.wildcards:
            return Route(model, [Deployment(self.wildcards[0], model)])
        return None

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
