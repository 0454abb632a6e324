"""Dispatch: send a request to its route's deployments (retries, fallbacks, hedging) until one answers.

Everything here happens before the first byte reaches the client: an attempt counts as answered once a
streamed response's first chunk (the first token) or a whole non-streamed body arrived, so a connection
reset, a time-to-first-token timeout or a broken body can still be retried elsewhere.

Every attempt is authorized on the deployment it calls (`ctx.access`, routing.access): deployments the caller
may not use are skipped when candidates are picked, and `_attempt` refuses one should it get there anyway.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from llm_gateway.errors import (
    UNTRANSLATABLE,
    BadRequest,
    GatewayError,
    ServiceUnavailable,
    UpstreamTimeout,
    untranslatable,
)
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, NATIVE_BODY, NativeBody, UpstreamCall
from llm_gateway.providers.http import HttpClient, Timeouts, UpstreamResponse
from llm_gateway.routing.access import forbidden
from llm_gateway.routing.catalog import Catalog, Deployment, Route
from llm_gateway.routing.cooldown import Cooldowns
from llm_gateway.routing.hedge import BothFailed, hedge
from llm_gateway.routing.retry import CONTEXT, FATAL, Backoff, classify
from llm_gateway.settings import HedgeConfig, RoutingConfig
from llm_gateway.telemetry.attempts import FALLBACK, HEDGE, PRIMARY, RETRY, AttemptHook

CANONICAL = (CHAT, COMPLETIONS, EMBEDDINGS)
Result = tuple[UpstreamCall, Any]  # the call and an UpstreamResponse or BufferedResponse


class BufferedResponse:
    """A complete upstream body, read before anything reached the client; same reading API as the original."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, response: UpstreamResponse, body: bytes) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = body

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def read(self) -> bytes:
        return self.body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.body

    def release(self) -> None:
        return None


class Dispatcher:
    def __init__(self, client: HttpClient, catalog: Catalog | None = None, cooldowns: Cooldowns | None = None,
                 routing: RoutingConfig | None = None, *, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.client = client
        self.catalog = catalog
        self.routing = routing or RoutingConfig.model_validate({})
        self.cooldowns = cooldowns or Cooldowns(self.routing.cooldown)
        self.backoff = Backoff(self.routing.retries, rng)
        self.sleep = sleep
        self.on_attempt: AttemptHook | None = None  # telemetry: called once per attempt with its outcome
        # telemetry (tracing on): headers for an attempt's upstream request, e.g. its W3C `traceparent`
        self.trace_headers: Callable[[RequestContext, float], list[tuple[str, str]]] | None = None
        self.default_retries = self.routing.retries.max_retries
        self.default_hedge = self.routing.hedge if self.routing.hedge.enabled else None

    def call_for(self, ctx: RequestContext, deployment: Deployment, client_auth: str | None) -> UpstreamCall:
        opts = ctx.options
        native = ctx.extensions.get(NATIVE_BODY) if ctx.extensions else None
        native_body = native.body if isinstance(native, NativeBody) and (
            native.wire == deployment.provider.native_wire) else None
        return UpstreamCall(
            endpoint=ctx.endpoint, body=ctx.body, model=deployment.model, stream=ctx.stream,
            client_wants_usage=ctx.client_wants_usage, client_auth=client_auth,
            client_headers=ctx.request.headers, method=ctx.request.method, query=ctx.request.query,
            raw_body=None if opts is not None and opts.stripped else ctx.request.body,
            native_body=native_body)

    async def send(self, ctx: RequestContext, client_auth: str | None) -> Result:
        """Send to the route's deployments until one answers; return once it did (see the module docstring).

        Raises the last attempt's GatewayError (an upstream error status is the provider's mapped error).
        The work `ctx.defer`red until then runs right after the request went upstream; the answering
        attempt's bookkeeping (telemetry, cooldown, time to first token) is deferred in turn: the caller runs
        `ctx.run_deferred()` once the answer's first bytes left for the client.
        """
        route: Route = ctx.route
        if ctx.options is None and route.simple and not (route.retries or (
                route.retries is None and self.default_retries)) and not (route.hedge or self.default_hedge):
            return await self._only_attempt(ctx, route.deployments[0], client_auth, None)
        return await self._resilient(ctx, client_auth, route)

    async def _only_attempt(self, ctx: RequestContext, dep: Deployment, client_auth: str | None,
                            deadline: float | None) -> Result:
        """One attempt whose outcome is final: the deployment answers for the request either way.

        So its response headers are known before it starts, and can be written while the upstream works.
        """
        self._answered_by(ctx, dep, held=False, attempts=ctx.attempts + 1)
        result = await self._attempt(ctx, dep, client_auth, deadline, PRIMARY)
        ctx.in_flight_on = dep  # released when the request settles
        return result

    # -- one attempt
    async def _attempt(self, ctx: RequestContext, dep: Deployment, client_auth: str | None,
                       deadline: float | None, kind: str) -> Result:
        access = ctx.access
        if access is not None and not access.allows(dep):
            raise forbidden(ctx.model)
        provider = dep.provider
        call = self.call_for(ctx, dep, client_auth)
        try:
            prepared = provider.prepare(call)
        except UNTRANSLATABLE as exc:  # a provider's translation met a field of the wrong type: `stop: 5`
            raise untranslatable("OpenAI", ctx.model) from exc
        if prepared.dropped:  # parameters the provider cannot take: the client learns which were left out
            ctx.response_headers.append(("x-llm-gateway-dropped-params", ",".join(prepared.dropped)))
        timeouts = dep.timeouts or provider.timeouts
        if deadline is not None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise UpstreamTimeout("the request's timeout passed before an upstream answered")
            timeouts = Timeouts(min(timeouts.connect, left), min(timeouts.first_byte, left), timeouts.idle,
                                min(timeouts.total, left))
        if ctx.options is not None and ctx.options.phases:
            timeouts = _capped(timeouts, ctx.options.phases)
        ctx.attempts += 1
        self.cooldowns.begin(dep)
        dep.in_flight += 1
        dep.requests += 1
        started = time.perf_counter()
        if self.trace_headers is not None:
            prepared.headers.extend(self.trace_headers(ctx, started))
        try:
            canonical = call.endpoint in CANONICAL
            transport = provider.transport or self.client
            response: Any = await transport.send(provider.origin, prepared, timeouts, label=provider.name,
                                                 first_body=canonical and ctx.stream, after_write=ctx.run_deferred)
            if response.status >= 400:
                body = await response.read()
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers}
                raise provider.error(response.status, body, headers)
            if canonical:
                if ctx.stream:
                    await response.wait_body()
                else:
                    response = BufferedResponse(response, await response.read())
        except GatewayError as err:
            dep.in_flight -= 1
            if classify(err) != FATAL:
                self.cooldowns.failure(dep)
            if self.on_attempt is not None:
                self.on_attempt(ctx, dep, started, err, kind)
            raise
        except BaseException:  # cancelled: the client left, or this attempt lost a hedge (recorded by the caller)
            dep.in_flight -= 1
            raise
        ctx.defer(partial(self._succeeded, ctx, dep, started, time.perf_counter(), kind))
        return call, response

    def _succeeded(self, ctx: RequestContext, dep: Deployment, started: float, answered: float, kind: str) -> None:
        """An attempt's answer arrived at `answered`: noted once its first bytes went on (see `send`)."""
        dep.observe_ttft(answered - started)
        self.cooldowns.success(dep)
        if self.on_attempt is not None:
            self.on_attempt(ctx, dep, started, None, kind, answered)

    async def _hedged(self, ctx: RequestContext, client_auth: str | None, deadline: float | None,
                      cands: list[Deployment], kind: str, config: HedgeConfig) -> tuple[Deployment, Result]:
        """The first two candidates raced: the second starts when the first is late (see routing.hedge)."""
        first, second = cands[0], cands[1]
        delay = (first.p95_ttft() if config.use_p95 else None) or config.delay_s

        answered: list[int] = []

        def discard(index: int, result: Result) -> None:  # a loser that answered too (and was recorded): let go
            answered.append(index)
            cands[index].in_flight -= 1
            result[1].release()

        started = time.perf_counter()
        won = await hedge(lambda: self._attempt(ctx, first, client_auth, deadline, kind),
                          lambda: self._attempt(ctx, second, client_auth, deadline, HEDGE), delay, discard)
        if won.hedged and won.loser_error is None and not answered:
            if won.winner == 0:
                self._hedge_lost(ctx, second, HEDGE, started + delay)
            else:
                self._hedge_lost(ctx, first, kind, started)
        return cands[won.winner], won.value

    def _hedge_lost(self, ctx: RequestContext, dep: Deployment, kind: str, started: float) -> None:
        if self.on_attempt is None:
            return
        ctx.run_deferred()  # the answer's own record first
        self.on_attempt(ctx, dep, started, asyncio.CancelledError(), kind)
        log = ctx.attempt_log
        if log is not None and len(log) >= 2:  # the answer stays the last attempt, as the trace expects
            log[-1], log[-2] = log[-2], log[-1]

    def _answered_by(self, ctx: RequestContext, dep: Deployment, *, held: bool, attempts: int = 0) -> None:
        """Note the deployment that answered (or the last one tried) on the context and in response headers."""
        ctx.deployment = dep
        ctx.provider = dep.provider.name
        ctx.upstream_model = dep.model
        if held:
            ctx.in_flight_on = dep  # released when the request settles
        ctx.response_headers.extend((("x-gateway-provider", dep.provider.name), ("x-gateway-deployment", dep.id),
                                     ("x-gateway-attempts", str(attempts or ctx.attempts))))

    # -- retries, fallbacks, hedging
    def _plan(self, ctx: RequestContext, route: Route) -> tuple[Route, list[Route], int, HedgeConfig | None]:
        opts = ctx.options
        if opts is not None and opts.provider:
            pinned = self.catalog.pinned(route, opts.provider) if self.catalog is not None else None
            if pinned is None:
                raise BadRequest(f"x-gateway provider: unknown provider {opts.provider!r}",
                                 param="x-gateway.provider", code="invalid_gateway_option")
            pinned.fallbacks, pinned.context_window_fallbacks = route.fallbacks, route.context_window_fallbacks
            route = pinned
        if opts is not None and opts.fallbacks is not None:
            groups = [route, *self._resolve(opts.fallbacks)]
        else:
            groups = [route, *self._resolve(route.fallbacks), *route.chain]
        if opts is not None and opts.retries is not None:
            retries = opts.retries
        else:
            retries = route.retries if route.retries is not None else self.default_retries
        hedge_cfg = route.hedge or self.default_hedge
        if opts is not None and opts.hedge is not None:
            hedge_cfg = _hedge_option(opts.hedge, hedge_cfg)
        return route, groups, retries, hedge_cfg

    def _resolve(self, names: list[str]) -> list[Route]:
        if self.catalog is None:
            return []
        out = []
        for name in names:
            route = self.catalog.resolve(name)
            if route is None:
                raise BadRequest(f"fallback model {name!r} is not served by this gateway", code="model_not_found")
            out.append(route)
        return out

    async def _resilient(self, ctx: RequestContext, client_auth: str | None, route: Route) -> Result:
        route, groups, retries, hedge_cfg = self._plan(ctx, route)
        opts = ctx.options
        deadline = asyncio.get_running_loop().time() + opts.timeout if opts is not None and opts.timeout else None
        run = _Run(client_auth, deadline, retries, hedge_cfg, groups)
        i = 0
        while i < len(groups):  # the route, then its fallbacks (context-window fallbacks may replace them)
            run.kind = PRIMARY if i == 0 else FALLBACK
            i += 1
            result = await self._group(ctx, run, groups[i - 1], i)
            if result is not None:
                return result
        if run.last_err is None:  # everything is cooling down: try the first choice anyway, as a probe
            allowed = _allowed(ctx, route.strategy.order(route.deployments))
            if not allowed:  # e.g. a pinned provider's: none the caller may use
                raise forbidden(ctx.model)
            return await self._only_attempt(ctx, allowed[0], client_auth, deadline)
        if run.last_dep is not None:
            self._answered_by(ctx, run.last_dep, held=False)
        raise run.last_err

    async def _group(self, ctx: RequestContext, run: _Run, group: Route, after: int) -> Result | None:
        """Each usable deployment of one route once, then `retries` more with backoff; None: move on."""
        usable = self.cooldowns.usable
        cands = [d for d in _allowed(ctx, group.strategy.order(group.deployments)) if usable(d)]
        n = 0
        while cands and n < len(cands) + run.retries and ctx.attempts < self.routing.max_attempts:
            dep = cands[n] if n < len(cands) else cands[0]
            if n >= len(cands):  # another try of a deployment that failed: back off first
                # prefer those not cooling down; if all are, the retries the request asked for still run
                again = [d for d in cands if usable(d)] or cands
                dep = again[(n - len(cands)) % len(again)]
                run.retried += 1
                wait = self.backoff.delay(run.retried, run.last_err)
                if wait is None or (run.deadline is not None and
                                    asyncio.get_running_loop().time() + wait >= run.deadline):
                    return None
                await self.sleep(wait)
            try:
                if n == 0 and run.hedge is not None and len(cands) > 1:
                    dep, result = await self._hedged(ctx, run.client_auth, run.deadline, cands, run.kind, run.hedge)
                else:
                    result = await self._attempt(ctx, dep, run.client_auth, run.deadline, run.kind)
            except BothFailed as both:
                n = 2
                errors = [_gateway_error(e) for e in both.errors]
                if not self._failed(ctx, run, cands[1], errors[-1], group, after, fatal=errors[0]):
                    return None
                continue
            except GatewayError as err:
                n += 1
                if not self._failed(ctx, run, dep, err, group, after):
                    return None
                continue
            self._answered_by(ctx, dep, held=True)
            return result
        return None

    def _failed(self, ctx: RequestContext, run: _Run, dep: Deployment, err: GatewayError, group: Route,
                after: int, fatal: GatewayError | None = None) -> bool:
        """Note a failed attempt; raise it when nothing can help, False to leave this route, True to go on."""
        run.last_dep, run.last_err = dep, err
        if group is run.groups[0]:
            run.kind = RETRY
        for candidate in (fatal, err):
            if candidate is not None and classify(candidate) == FATAL:
                self._answered_by(ctx, dep, held=False)
                raise candidate
        if classify(err) == CONTEXT:
            bigger = self._resolve(group.context_window_fallbacks)
            if not bigger:
                self._answered_by(ctx, dep, held=False)
                raise err
            run.groups[after:] = bigger
            return False
        return True


class _Run:
    """One request's way through its routes: what it may still do, and how the last attempt failed."""

    __slots__ = ("client_auth", "deadline", "groups", "hedge", "kind", "last_dep", "last_err", "retried",
                 "retries")

    def __init__(self, client_auth: str | None, deadline: float | None, retries: int, hedge: HedgeConfig | None,
                 groups: list[Route]) -> None:
        self.client_auth = client_auth
        self.deadline = deadline
        self.retries = retries
        self.hedge = hedge
        self.groups = groups
        self.kind = PRIMARY
        self.retried = 0
        self.last_dep: Deployment | None = None
        self.last_err: GatewayError | None = None


def _allowed(ctx: RequestContext, deps: list[Deployment]) -> list[Deployment]:
    """The deployments the caller may use: a forbidden one is skipped, never called."""
    access = ctx.access
    if access is None or access.pairs is None:
        return deps
    return [d for d in deps if access.allows(d)]


def _hedge_option(value: float | bool, configured: HedgeConfig | None) -> HedgeConfig | None:
    """The `x-gateway` hedge option over the configured hedging: off, on as configured, or after `value` s."""
    if value is False:
        return None
    if value is True:
        return configured or HedgeConfig(enabled=True)
    return HedgeConfig(enabled=True, delay_s=float(value))


def _capped(timeouts: Timeouts, phases: dict[str, float]) -> Timeouts:
    """The deployment's timeouts, shortened by the request's own (`x-gateway` timeout as an object)."""
    return Timeouts(min(timeouts.connect, phases.get("connect", timeouts.connect)),
                    min(timeouts.first_byte, phases.get("first_token", timeouts.first_byte)),
                    min(timeouts.idle, phases.get("idle", timeouts.idle)),
                    min(timeouts.total, phases.get("total", timeouts.total)))


def _gateway_error(exc: BaseException) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    return ServiceUnavailable(f"upstream attempt failed: {type(exc).__name__}")
