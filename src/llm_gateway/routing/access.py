"""Authorization: which deployments a caller may reach, and whether it may steer routing or pass requests through.

The decision is made on the deployment actually called (a provider and the model name it is sent), for every
attempt: a key's `models` list names models or aliases, and each name stands for the deployments the catalog
resolves it to (its own and its fallback chain's, never its configured fallbacks to other names). So an alias,
`PROVIDER/MODEL`, a fallback, a hedge or a pinned provider reach a deployment only if some allowed name reaches
it too. What can be computed ahead is: the allowed (provider, model) pairs per distinct `models` list, and the
allowed part of each route per caller kind, both memoised.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.errors import BadRequest, Forbidden
from llm_gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from llm_gateway.routing.catalog import Catalog, Deployment, Route

_MEMO_MAX = 4096  # distinct model lists and routes per access: bounded, client-chosen names feed the routes
OVERRIDES = ("fallbacks", "provider", "hedge", "retries")  # `x-gateway` options that need allow_overrides
MODELED = frozenset({CHAT, COMPLETIONS, EMBEDDINGS, "models"})  # endpoints that are not pass-through


def forbidden(model: str) -> Forbidden:
    return Forbidden(f"this API key may not use the model {model!r}", param="model", code="model_not_allowed")


class Access:
    """What one kind of caller may do: reach these deployments (`pairs`; None: every one), override routing,
    use pass-through paths."""

    __slots__ = ("_routes", "catalog", "names", "overrides", "pairs", "passthrough")

    def __init__(self, catalog: Catalog, names: frozenset[str] | None, pairs: frozenset[tuple[str, str]] | None,
                 overrides: bool, passthrough: bool) -> None:
        self.catalog = catalog
        self.names = names
        self.pairs = pairs
        self.overrides = overrides
        self.passthrough = passthrough
        self._routes: dict[str, tuple[Route, Route | None]] = {}

    def admit(self, ctx: Any) -> None:
        """The request's decision before anything is spent: its options, pass-through, and its route cut down
        to what this caller may reach (`ctx.route`); 400 or 403 when nothing may be done."""
        if not self.overrides:
            self.check_options(ctx.options)
        passthrough = ctx.endpoint not in MODELED
        if passthrough and not self.passthrough:
            raise Forbidden(f"this API key may not use pass-through paths such as {ctx.request.path!r} (the key "
                            "or its team needs allow_passthrough)", code="passthrough_not_allowed")
        if self.pairs is None or (passthrough and not ctx.model):
            return  # a pass-through path without a model: the permission above is all there is to check
        route = ctx.route
        if route is None:  # an unknown model: 404 from the routing stage, unless the key could not name it
            if self.names is not None and ctx.model not in self.names:
                raise forbidden(ctx.model)
            return
        allowed = self.route(route)
        if allowed is None:
            raise forbidden(ctx.model)
        ctx.route = allowed

    def counted(self, model: str, route: Route | None) -> Route | None:
        """The route a token count for `model` uses, decided as a request for it would be; 403 when the caller
        may not use it (None: an unknown model the caller may name)."""
        if self.pairs is None:
            return route
        allowed = self.route(route) if route is not None else None
        if allowed is None and (route is not None or self.names is None or model not in self.names):
            raise forbidden(model)
        return allowed

    def allows(self, dep: Deployment) -> bool:
        pairs = self.pairs
        # No model: a pass-through path that names none (e.g. GET /v1/files), which allow_passthrough covers.
        return pairs is None or (dep.provider.name, dep.model) in pairs or (not dep.model and self.passthrough)

    def route(self, route: Route) -> Route | None:
        """The part of `route` this caller may reach (the route itself when all of it); None: nothing."""
        if self.pairs is None:
            return route
        memo = self._routes
        found = memo.get(route.name)
        if found is not None and found[0] is route:  # the memo holds the route: identity is safe
            return found[1]
        allowed = self._restrict(route)
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[route.name] = (route, allowed)
        return allowed

    def _restrict(self, route: Route) -> Route | None:
        deps = [d for d in route.deployments if self.allows(d)]
        chain = [r for r in (self._restrict(c) for c in route.chain) if r is not None]
        if not deps and not chain:
            return None
        if len(deps) == len(route.deployments) and len(chain) == len(route.chain):
            return route
        if not deps:  # only its fallback chain may serve this caller: the chain's first route leads
            deps, chain = chain[0].deployments, chain[1:]
        return Route(route.name, deps, list(route.fallbacks), list(route.context_window_fallbacks), chain,
                     route.strategy, route.retries, route.hedge, partial=True)

    def listed(self, listed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The model list as this caller may see it: names with at least one deployment it may reach."""
        if self.pairs is None:
            return listed
        out = []
        for name, owner in listed:
            route = self.catalog.resolve(name)
            if route is not None and self.route(route) is not None:
                out.append((name, owner))
        return out

    @staticmethod
    def check_options(options: object) -> None:
        """400 for a routing override made without the permission (never silently ignored)."""
        if options is None:
            return
        for name in OVERRIDES:
            if getattr(options, name, None) is not None:
                raise BadRequest(f"x-gateway {name}: this API key may not override routing (the key or its team "
                                 "needs allow_overrides)", param=f"x-gateway.{name}", code="override_not_allowed")


def reachable(catalog: Catalog, ctx: Any) -> list[Deployment]:
    """The deployments a request may be sent to, as routing.dispatch plans it and as far as its caller may use
    them: its route's and fallback chain's, the provider it pins, its fallbacks' (configured or asked for) and
    the context-window fallbacks of any of them. What budgets price and a model's guardrails are decided on."""
    route: Route | None = ctx.route
    if route is None:
        return []
    primary = [*route.deployments, *(d for r in route.chain for d in r.deployments)]
    opts = ctx.options
    fallbacks = opts.fallbacks if opts is not None and opts.fallbacks is not None else route.fallbacks
    pinned = opts.provider if opts is not None else None
    if not fallbacks and not pinned and not route.context_window_fallbacks:  # the usual request
        return primary
    groups: list[Route] = []
    if pinned and (found := catalog.pinned(route, pinned)) is not None:
        groups.append(found)
    groups.extend(r for r in map(catalog.resolve, fallbacks) if r is not None)
    seen = {route.name, *(g.name for g in groups)}
    walk = [route, *groups]
    for group in walk:  # grows as it goes: a bigger model's own bigger ones are reachable too
        for name in group.context_window_fallbacks:
            if name not in seen and (found := catalog.resolve(name)) is not None:
                seen.add(name)
                walk.append(found)
                groups.append(found)
    access: Access | None = ctx.access
    deployments = [*primary, *(d for g in groups for d in g.deployments)]
    return deployments if access is None else [d for d in deployments if access.allows(d)]


def pairs_of(route: Route) -> frozenset[tuple[str, str]]:
    """The (provider, model) pairs a route and its fallback chain name."""
    out: set[tuple[str, str]] = set()
    _collect(route, out)
    return frozenset(out)


def _collect(route: Route, out: set[tuple[str, str]]) -> None:
    for dep in route.deployments:
        out.add((dep.provider.name, dep.model))
    for link in route.chain:
        _collect(link, out)


class Policy:
    """Makes the Access of each caller: everything for the master key (and when no keys are in use), and for
    a virtual key what its `models` list and its (or its team's) permissions give."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.everything = Access(catalog, None, None, True, True)
        self._pairs: dict[frozenset[str], frozenset[tuple[str, str]] | None] = {}
        self._access: dict[tuple[frozenset[str] | None, bool, bool], Access] = {}
        # team id -> (allow_overrides, allow_passthrough), for teams that allow either (kept by Accounts)
        self.teams: dict[str, tuple[bool, bool]] = {}

    def for_key(self, models: frozenset[str] | None, team_id: str | None, overrides: bool | None,
                passthrough: bool | None) -> Access:
        if overrides is None or passthrough is None:
            team = self.teams.get(team_id, (False, False)) if team_id else (False, False)
            overrides = team[0] if overrides is None else overrides
            passthrough = team[1] if passthrough is None else passthrough
        memo_key = (models, overrides, passthrough)
        access = self._access.get(memo_key)
        if access is None:
            if len(self._access) >= _MEMO_MAX:
                self._access.clear()
            pairs = None if models is None else self._pairs_of(models)
            access = self._access[memo_key] = Access(self.catalog, models, pairs, overrides, passthrough)
        return access

    def _pairs_of(self, models: frozenset[str]) -> frozenset[tuple[str, str]] | None:
        found = self._pairs.get(models, False)
        if found is not False:
            return found  # type: ignore[return-value]
        if "*" in models:
            pairs = None
        else:
            out: set[tuple[str, str]] = set()
            for name in models:
                route = self.catalog.resolve(name)
                if route is not None:
                    _collect(route, out)
            pairs = frozenset(out)
        if len(self._pairs) >= _MEMO_MAX:
            self._pairs.clear()
        self._pairs[models] = pairs
        return pairs

    def clear(self) -> None:
        """Forget what was computed (the catalog or a team's permissions changed)."""
        self._access.clear()
