"""The guardrail stage: which guardrails a request gets (the policy), their pre-call checks, and their verdicts.

Built only when `guardrails` are configured (`build_guardrails` returns None otherwise): with none, no code of
this package runs on the request path. Each kind's module, and the libraries it needs, is imported here at
start-up, and only for the kinds configured.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from llm_gateway.guardrails.base import Check, Parts
from llm_gateway.guardrails.flow import RequestGuard
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from llm_gateway.routing.access import pairs_of, reachable
from llm_gateway.routing.catalog import Catalog, Route
from llm_gateway.settings import GatewayConfig, GuardrailPolicyConfig
from llm_gateway.telemetry.metrics import Registry

log = logging.getLogger("llm_gateway.guardrails")

MODULES = {"pii": "pii", "secrets": "secrets", "prompt_injection": "injection", "webhook": "remote",
           "llm_judge": "remote", "regex": "patterns", "keywords": "patterns"}
GUARDED = (CHAT, COMPLETIONS, EMBEDDINGS)
EXTENSION = "guardrails"  # ctx.extensions: the verdicts, for the ledger and the trace
MAX_POLICIES = 10_000


class Policy:
    """The guardrails of a request: gateway default, then its team's, its key's, its model's (in that order).

    Teams and keys name theirs in the config (`guardrail_policy.teams` / `keys`) or through the admin API (their
    `guardrails` field; `teams` here is the accounts' copy of the teams' lists, kept current off the request path).
    """

    def __init__(self, config: GuardrailPolicyConfig, checks: dict[str, Check],
                 teams: dict[str, tuple[str, ...]] | None = None, catalog: Catalog | None = None) -> None:
        self.config = config
        self.checks = checks
        self.teams = teams if teams is not None else {}
        self.catalog = catalog
        self._known: dict[tuple[Any, ...], tuple[Check, ...]] = {}
        # A model's guardrails bind its deployments: the (provider, model) pairs each policy's name reaches
        self._model_pairs: dict[str, frozenset[tuple[str, str]]] = {}
        for name in config.models:
            route = catalog.resolve(name) if catalog is not None else None
            if route is not None:
                self._model_pairs[name] = pairs_of(route)
        self._routes: dict[str, tuple[Route, tuple[str, ...]]] = {}

    def models_of(self, ctx: RequestContext) -> tuple[str, ...]:
        """The model policies a request gets: the one of the name it sent, and of every name whose deployments
        it may reach (an alias, PROVIDER/MODEL, a fallback, a pinned provider)."""
        if not self._model_pairs or self.catalog is None or ctx.route is None:
            return (ctx.model,)
        route = ctx.route
        plain = ctx.options is None  # the usual request: decided once per route (and caller kind)
        if plain:
            found = self._routes.get(route.name)
            if found is not None and found[0] is route:
                return found[1]
        pairs = {(d.provider.name, d.model) for d in reachable(self.catalog, ctx)}
        names = tuple(sorted({ctx.model, *(n for n, p in self._model_pairs.items() if not p.isdisjoint(pairs))}))
        if plain:
            if len(self._routes) >= MAX_POLICIES:
                self._routes.clear()
            self._routes[route.name] = (route, names)
        return names

    def of(self, ctx: RequestContext) -> tuple[Check, ...]:
        key = ctx.key
        key_id = getattr(key, "id", None)
        alias = getattr(key, "alias", None)
        own = getattr(key, "guardrails", None) or ()
        team = self.teams.get(ctx.team, ()) if ctx.team else ()
        models = self.models_of(ctx)
        index = (ctx.team, team, key_id, alias, own, models)
        found = self._known.get(index)
        if found is None:
            c = self.config
            names = [*c.default, *c.teams.get(ctx.team or "", ()), *team, *c.keys.get(key_id or "", ()),
                     *(c.keys.get(alias, ()) if alias else ()), *own,
                     *(name for model in models for name in c.models.get(model, ()))]
            found = self._resolve(names, key_id)
            if len(self._known) >= MAX_POLICIES:
                self._known.clear()
            self._known[index] = found
        return found

    def _resolve(self, names: list[str], key_id: str | None) -> tuple[Check, ...]:
        out: list[Check] = []
        for name in names:
            check = self.checks.get(name)
            if check is None:  # named by a key or team through the admin API, but not configured
                log.warning("guardrail policy: unknown guardrail %r (key %s): not run", name, key_id)
            elif check not in out:
                out.append(check)
        return tuple(out)


class GuardrailStage:
    """Admits after authentication (the policy reads the key) and after the cache; settles before recording."""

    def __init__(self, policy: Policy, registry: Registry) -> None:
        self.policy = policy
        self.verdicts = registry.counter("llm_gateway_guardrail_verdicts_total",
                                         "Guardrail verdicts by guardrail and action", ["guardrail", "action"])

    async def admit(self, ctx: RequestContext) -> None:
        if ctx.endpoint not in GUARDED:
            return
        checks = self.policy.of(ctx)
        if not checks:
            return
        guard = ctx.guard = RequestGuard(ctx, checks)
        await guard.before()

    def settle(self, ctx: RequestContext) -> None:
        guard = ctx.guard
        if guard is None:
            return
        verdicts = list(guard.verdicts.values())
        for verdict in verdicts:
            self.verdicts.inc((verdict.guardrail, verdict.action))
        ctx.extensions[EXTENSION] = [v.public() for v in verdicts]

    async def close(self) -> None:
        for check in self.policy.checks.values():
            await check.close()


def build_guardrails(config: GatewayConfig, registry: Registry, catalog: Any, client: Any,
                     teams: dict[str, tuple[str, ...]] | None = None) -> GuardrailStage | None:
    if not config.guardrails:
        return None
    parts = Parts(catalog, client)
    checks: dict[str, Check] = {}
    for guardrail in config.guardrails:
        module = importlib.import_module(f"llm_gateway.guardrails.checks.{MODULES[guardrail.type]}")
        checks[guardrail.name] = module.build(guardrail, parts)
    log.info("guardrails: %s", ", ".join(f"{g.name} ({g.type}, {g.action})" for g in config.guardrails))
    return GuardrailStage(Policy(config.guardrail_policy, checks, teams, parts.catalog), registry)
