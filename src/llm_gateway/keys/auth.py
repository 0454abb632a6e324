"""The auth stage: master key or virtual key from the request headers, model permission, budget admission."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llm_gateway.accounting.tokens import remote_image_tokens
from llm_gateway.errors import Forbidden, Unauthorized
from llm_gateway.keys.budget import Budget, BudgetTracker, exceeded
from llm_gateway.keys.cache import MISSING, KeyCache
from llm_gateway.keys.model import MASTER, KeyRecord, Principal, hash_secret
from llm_gateway.keys.shared_budget import SharedBudgets
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.routing.access import Access, Policy, reachable
from llm_gateway.routing.catalog import Catalog
from llm_gateway.usage.pricing import Price, PriceBook

_BUDGET = "budget"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def client_secret(headers: dict[str, str]) -> str:
    """The key a client sent: `Authorization: Bearer …` (OpenAI), `x-api-key` (Anthropic), `api-key` (Azure)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            return token.strip()
    return headers.get("x-api-key") or headers.get("api-key") or ""


class AuthStage:
    """Admits first (UsageStage and CostStage before it in the list only settle). Without a master key the
    gateway is open and this stage does nothing."""

    def __init__(self, master_key: str | None, cache: KeyCache, budgets: BudgetTracker, prices: PriceBook,
                 default_output_tokens: int = 1024, policy: Policy | None = None) -> None:
        self.master = master_key.encode() if master_key else None
        self.policy = policy or Policy(Catalog({}, {}))  # create_app gives the gateway's catalog
        self.cache = cache
        self.budgets = budgets
        self.prices = prices
        self.default_output_tokens = default_output_tokens
        self.shared: SharedBudgets | None = None  # with redis.url: budgets decided across replicas
        # with auth.jwt: an IdP access token (a compact JWS: two dots, which no virtual key has) -> its record
        self.jwt: Callable[[str], Awaitable[KeyRecord]] | None = None

    async def identify(self, headers: dict[str, str]) -> KeyRecord | Principal | None:
        """The caller's key (MASTER for the master key); None when the gateway is open. 401 when invalid."""
        if self.master is None:
            return None
        secret = client_secret(headers)
        if not secret:
            raise Unauthorized("missing API key: send it as 'Authorization: Bearer <key>'")
        if hmac.compare_digest(secret.encode(), self.master):
            return MASTER
        if self.jwt is not None and secret.count(".") == 2:
            return await self.jwt(secret)
        key_hash = hash_secret(secret)
        found = self.cache.get(key_hash)
        key = await self.cache.fetch(key_hash) if found is MISSING else found
        if not isinstance(key, KeyRecord):
            raise Unauthorized("invalid API key")
        if key.blocked:
            raise Unauthorized("this API key is blocked", code="key_blocked")
        if key.expired(int(time.time() * 1000)):
            raise Unauthorized("this API key has expired", code="key_expired")
        return key

    async def access_of(self, headers: dict[str, str]) -> Access | None:
        """What the caller may reach, for the edges that run no pipeline (model list, token counting); None:
        everything (no keys in use, or the master key). 401 when the key is invalid."""
        key = await self.identify(headers)
        if not isinstance(key, KeyRecord):
            return None
        return self.policy.for_key(key.models, key.team_id, key.allow_overrides, key.allow_passthrough)

    async def admit(self, ctx: RequestContext) -> None:
        key = await self.identify(ctx.request.headers)
        if key is None:
            return
        ctx.key = key
        if not isinstance(key, KeyRecord):  # the master key: everything; the user it names is the user
            return
        # A key speaks for its own user (or for none): the `user` the client named is only the end user.
        ctx.user = key.user_id or ""
        access = self.policy.for_key(key.models, key.team_id, key.allow_overrides, key.allow_passthrough)
        ctx.access = access
        access.admit(ctx)
        if key.team_id:
            ctx.team = key.team_id
        budgets = self.budgets.applicable(self._entities(key))
        if budgets:
            estimate = self._estimate(ctx, self._price(ctx))
            periods: list[float] = []  # the periods Redis holds the estimate in
            shared = await self.shared.reserve(budgets, estimate, periods) if self.shared is not None else False
            if shared is False:  # no Redis, or it cannot be reached: this replica's tracker decides
                self.budgets.reserve(budgets, estimate)
            elif shared is True:
                self.budgets.hold(budgets, estimate)
            else:
                raise exceeded(shared, time.time())
            ctx.extensions[_BUDGET] = (budgets, estimate, shared is True, periods)

    def settle(self, ctx: RequestContext) -> None:
        held: tuple[list[Budget], float, bool, list[float]] | None = ctx.extensions.get(_BUDGET)
        if held is not None:
            budgets, estimate, shared, periods = held
            self.budgets.settle(budgets, estimate, ctx.cost)
            if self.shared is not None:  # spend goes to Redis also when the hold could not
                self.shared.settle(budgets, estimate if shared else 0.0, ctx.cost, periods if shared else None)
        elif isinstance(ctx.key, KeyRecord) and ctx.cost:
            self.budgets.add(self._entities(ctx.key), ctx.cost)
            if self.shared is not None:
                self.shared.settle(self.budgets.applicable(self._entities(ctx.key)), 0.0, ctx.cost)

    @staticmethod
    def _entities(key: KeyRecord) -> list[tuple[str, str]]:
        out = [("key", key.id)]
        if key.user_id:
            out.append(("user", key.user_id))
        if key.team_id:
            out.append(("team", key.team_id))
        return out

    def _estimate(self, ctx: RequestContext, price: Price) -> float:
        """An upper bound of the request's cost: every request byte a prompt token, and the full max_tokens for
        each of the answers it asks for (`n`; `best_of` on completions, all of them billed)."""
        body: dict[str, Any] = ctx.body
        out_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or self.default_output_tokens
        if not isinstance(out_tokens, int) or out_tokens <= 0:
            out_tokens = self.default_output_tokens
        answers = max(_count(body.get("n")), _count(body.get("best_of")))
        out_tokens *= answers
        raw = ctx.request.body
        prompt_tokens = len(raw)
        if b"image" in raw:  # pictures by URL: a few bytes for hundreds of tokens
            prompt_tokens += remote_image_tokens(body, ctx.model)
        price = price.at(prompt_tokens)
        return prompt_tokens * max(price.input, price.cache_write, price.cache_write_1h, price.input_audio,
                                   price.input_image) + out_tokens * max(price.output, price.reasoning,
                                                                         price.output_audio, price.output_image)

    def _price(self, ctx: RequestContext) -> Price:
        """The dearest price among the deployments the request may go to: its route's, the fallback chain's, its
        fallbacks' (configured or `x-gateway`) and context-window fallbacks'. With `pricing.unknown: reject`, a
        deployment with no price refuses the request: a budget cannot bind on spend it cannot see."""
        deployments = reachable(self.policy.catalog, ctx)
        tier = ctx.body.get("service_tier")
        tier = tier if isinstance(tier, str) else ""
        prices = []
        for dep in deployments:
            priced = self.prices.for_deployment(dep)
            if priced is None:
                if self.prices.reject_unknown:
                    raise Forbidden(f"the model {ctx.model!r} has no known price (deployment {dep.id}) and this "
                                    "key has a budget", param="model", code="model_not_priced")
                continue
            prices.append(priced.for_tier(tier)[0] if tier else priced.price)
        if not deployments:  # an unknown model: the routing stage refuses it next
            priced = self.prices.for_model(ctx.model)
            if priced is not None:
                prices.append(priced.price)
        return max(prices, key=lambda p: p.input + p.output, default=Price())
