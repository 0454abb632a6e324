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
from llm_gateway.settings import GatewayConfig, GuardrailPolicyConfig
from llm_gateway.telemetry.metrics import Registry

log = logging.getLogger("llm_gateway.guardrails")

MODULES = {"pii": "pii", "secrets": "secrets", "prompt_injection": "injection", "webhook": "remote",
           "llm_judge": "remote", "regex": "patterns", "keywords": "patterns"}
GUARDED = (CHAT, COMPLETIONS, EMBEDDINGS)
EXTENSION = "guardrails"  # ctx.extensions: the verdicts, for the ledger and the trace
KEY_FIELD = "guardrails"  # a key's metadata field naming more guardrails for it
MAX_POLICIES = 10_000


class Policy:
    """The guardrails of a request: gateway default, then its team's, its key's, its model's (in that order)."""

    def __init__(self, config: GuardrailPolicyConfig, checks: dict[str, Check]) -> None:
        self.config = config
        self.checks = checks
        self._known: dict[tuple[Any, ...], tuple[Check, ...]] = {}

    def of(self, ctx: RequestContext) -> tuple[Check, ...]:
        key = ctx.key
        key_id = getattr(key, "id", None)
        alias = getattr(key, "alias", None)
        extra = getattr(key, "metadata", None)
        extra = extra.get(KEY_FIELD) if isinstance(extra, dict) else None
        listed = tuple(extra) if isinstance(extra, list) else ()
        index = (ctx.team, key_id, alias, ctx.model, listed)
        found = self._known.get(index)
        if found is None:
            found = self._resolve(ctx.team, key_id, alias, ctx.model, listed)
            if len(self._known) >= MAX_POLICIES:
                self._known.clear()
            self._known[index] = found
        return found

    def _resolve(self, team: str, key_id: str | None, alias: str | None, model: str,
                 listed: tuple[Any, ...]) -> tuple[Check, ...]:
        c = self.config
        names = [*c.default, *c.teams.get(team or "", ()), *c.keys.get(key_id or "", ()),
                 *(c.keys.get(alias, ()) if alias else ()), *listed, *c.models.get(model, ())]
        out: list[Check] = []
        for name in names:
            check = self.checks.get(name) if isinstance(name, str) else None
            if check is None:
                log.warning("guardrail policy: unknown guardrail %r on key %s", name, key_id)
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


def build_guardrails(config: GatewayConfig, registry: Registry, catalog: Any, client: Any) -> GuardrailStage | None:
    if not config.guardrails:
        return None
    parts = Parts(catalog, client)
    checks: dict[str, Check] = {}
    for guardrail in config.guardrails:
        module = importlib.import_module(f"llm_gateway.guardrails.checks.{MODULES[guardrail.type]}")
        checks[guardrail.name] = module.build(guardrail, parts)
    log.info("guardrails: %s", ", ".join(f"{g.name} ({g.type}, {g.action})" for g in config.guardrails))
    return GuardrailStage(Policy(config.guardrail_policy, checks), registry)
