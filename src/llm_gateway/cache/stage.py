"""The cache stage: look up before the upstream call (after limits), store after it, coalesce identical requests."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from llm_gateway.cache.backend import CacheBackend
from llm_gateway.cache.keys import CACHEABLE, decide, exact_key, resolved_model, scope_of
from llm_gateway.cache.memory import MemoryBackend
from llm_gateway.cache.replay import StreamCapture, answer_calls_tools
from llm_gateway.pipeline.context import RequestContext, Usage
from llm_gateway.providers.base import CHAT
from llm_gateway.settings import CacheConfig, ModelCacheConfig
from llm_gateway.telemetry.metrics import Counter, Registry

if TYPE_CHECKING:
    from llm_gateway.cache.semantic import SemanticCache

log = logging.getLogger("llm_gateway.cache")

HIT, HIT_SEMANTIC, MISS, BYPASS = "HIT", "HIT-SEMANTIC", "MISS", "BYPASS"


class Ticket:
    """One request's dealings with the cache, kept on `ctx.cache` from admit to settle."""

    __slots__ = ("answer", "capture", "key", "kind", "leader", "model", "partition", "store", "ttl", "vector")

    def __init__(self, key: str, model: str, ttl: float, store: bool) -> None:
        self.key = key
        self.model = model
        self.ttl = ttl
        self.store = store
        self.answer: bytes | None = None  # set on a hit: the edge replays it instead of calling upstream
        self.capture: StreamCapture | None = None  # set on a streamed miss: the edge feeds it what it sends
        self.leader = False  # this request's upstream call is the one identical requests wait for
        self.partition = ""
        self.vector: Any = None
        self.kind = ""


def _counter(registry: Registry, name: str, help: str, labels: tuple[str, ...]) -> Counter:
    """Register once: another part may already own a series of this name (then it is shared, if it fits)."""
    found = registry.metrics.get(name)
    if isinstance(found, Counter) and found.label_names == labels:
        return found
    if found is not None:
        name = f"llm_gateway_{name}"
    return registry.counter(name, help, labels)


class CacheStage:
    def __init__(self, config: CacheConfig, backend: CacheBackend, registry: Registry,
                 semantic: SemanticCache | None = None) -> None:
        self.config = config
        self.backend = backend
        self.semantic = semantic
        self.models = config.models
        self.max_entry = int(config.max_entry_kb * 1024)
        self.flights: dict[str, asyncio.Future[bytes | None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.hits = _counter(registry, "cache_hits_total", "Answers served from the gateway's cache",
                             ("model", "kind"))
        self.misses = _counter(registry, "cache_misses_total", "Cache lookups that found no answer", ("model",))
        self.bypasses = _counter(registry, "cache_bypass_total", "Requests that skipped the cache",
                                 ("model", "reason"))

    def _model_config(self, ctx: RequestContext, resolved: str) -> ModelCacheConfig | None:
        if not self.models:
            return None
        return self.models.get(ctx.model) or self.models.get(resolved)

    # -- before the upstream call
    async def admit(self, ctx: RequestContext) -> None:
        if ctx.endpoint not in CACHEABLE or ctx.route is None:
            return
        resolved = resolved_model(ctx.route, ctx.model)
        mc = self._model_config(ctx, resolved)
        if mc is not None and mc.enabled is False:
            return
        ttl = mc.ttl_s if mc is not None and mc.ttl_s else self.config.ttl_s
        decision = decide(ctx, self.config, ttl)
        if not decision.lookup and not decision.store:
            self._mark(ctx, BYPASS)
            self.bypasses.inc((ctx.model, decision.reason))
            return
        scope = scope_of(self.config.scope, ctx)
        ticket = Ticket(exact_key(ctx.endpoint, resolved, scope, ctx.body), resolved, decision.ttl, decision.store)
        ctx.cache = ticket
        if ctx.stream:
            ticket.capture = StreamCapture()
        if not decision.lookup:
            self._mark(ctx, BYPASS)
            self.bypasses.inc((ctx.model, decision.reason))
            return
        answer = await self.backend.get(ticket.key, resolved)
        if answer is not None:
            self._hit(ctx, ticket, answer, HIT)
            return
        if await self._join_flight(ctx, ticket):
            return
        semantic = self.semantic
        if semantic is not None and ctx.endpoint == CHAT and semantic.enabled_for(mc):
            found = await semantic.lookup(ctx, ticket, mc)
            if found is not None:
                answer = await self.backend.get(found[0], found[1])
                if answer is not None:
                    self._hit(ctx, ticket, answer, HIT_SEMANTIC)
                    ctx.response_headers.append(("x-cache-similarity", f"{found[2]:.4f}"))
                    return
        self._mark(ctx, MISS)

    async def _join_flight(self, ctx: RequestContext, ticket: Ticket) -> bool:
        """Wait for an identical request already on its way upstream; or become the one others wait for."""
        if not self.config.coalesce:
            return False
        flight = self.flights.get(ticket.key)
        if flight is None:
            self.flights[ticket.key] = asyncio.get_running_loop().create_future()
            ticket.leader = True
            return False
        try:
            answer = await asyncio.wait_for(asyncio.shield(flight), self.config.coalesce_timeout_s)
        except TimeoutError:
            answer = None
        if answer is None:
            return False  # the first request failed or its answer may not be cached: ask upstream ourselves
        self._hit(ctx, ticket, answer, HIT)
        ticket.kind = "coalesced"
        ctx.response_headers.append(("x-cache-coalesced", "true"))
        return True

    def _mark(self, ctx: RequestContext, label: str) -> None:
        ctx.cache_status = label.lower()
        ctx.response_headers.append(("x-cache", label))

    def _hit(self, ctx: RequestContext, ticket: Ticket, answer: bytes, label: str) -> None:
        ticket.answer = answer
        ticket.kind = "semantic" if label == HIT_SEMANTIC else "exact"
        ticket.capture = None
        ctx.cache_status = "hit"  # the cost stage bills a hit at zero
        ctx.response_headers.append(("x-cache", label))
        ctx.provider = "cache"
        try:
            usage = orjson.loads(answer).get("usage")
        except (orjson.JSONDecodeError, AttributeError):
            usage = None
        ctx.usage = Usage.from_openai(usage) if isinstance(usage, dict) else Usage()

    # -- after it
    def settle(self, ctx: RequestContext) -> None:
        ticket = ctx.cache
        if not isinstance(ticket, Ticket):
            return
        if ticket.answer is not None:
            self.hits.inc((ctx.model, ticket.kind))
            if ticket.kind == "semantic":  # the same wording again is then an exact hit: no embedding needed
                self._put(ticket, ticket.answer)
            else:
                self._land(ticket, ticket.answer)
            return
        if ctx.cache_status == "miss":
            self.misses.inc((ctx.model,))
        answer = self._storable(ctx, ticket) if ticket.store else None
        if answer is None:
            self._land(ticket, None)
            return
        if self.semantic is not None and ticket.vector is not None:
            self.semantic.add(ticket)
        self._put(ticket, answer)

    def _put(self, ticket: Ticket, answer: bytes) -> None:
        if isinstance(self.backend, MemoryBackend):
            self.backend.set_now(ticket.key, ticket.model, answer, ticket.ttl)
            self._land(ticket, answer)
            return
        task = asyncio.get_running_loop().create_task(self._store(ticket, answer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _store(self, ticket: Ticket, answer: bytes) -> None:
        # Waiters get the answer at once; the flight is kept until the write lands so that a request arriving
        # in between joins it instead of missing.
        flight = self.flights.get(ticket.key) if ticket.leader else None
        if flight is not None and not flight.done():
            flight.set_result(answer)
        try:
            await self.backend.set(ticket.key, ticket.model, answer, ticket.ttl)
        finally:
            self._land(ticket, answer)

    def _land(self, ticket: Ticket, answer: bytes | None) -> None:
        if not ticket.leader:
            return
        ticket.leader = False
        flight = self.flights.pop(ticket.key, None)
        if flight is not None and not flight.done():
            flight.set_result(answer)

    def _storable(self, ctx: RequestContext, ticket: Ticket) -> bytes | None:
        """The answer to keep: only complete, successful ones, and tool calls only when configured."""
        if ctx.status != 200 or ctx.disconnected:
            return None
        if not _answered_by_route(ctx):
            return None
        if ticket.capture is not None:
            answer = ticket.capture.result(ctx.usage)
        else:
            answer = ctx.output if isinstance(ctx.output, bytes) else None
        if not answer or len(answer) > self.max_entry:
            return None
        try:
            parsed = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict) or "error" in parsed:
            return None
        if not self.config.cache_tool_calls and answer_calls_tools(parsed):
            return None
        return answer

    # -- lifecycle and admin
    async def clear(self, model: str | None) -> int:
        removed = await self.backend.clear(model)
        if self.semantic is not None:
            await self.semantic.clear(model)
        return removed

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        for flight in self.flights.values():
            if not flight.done():
                flight.set_result(None)
        await self.backend.close()
        if self.semantic is not None:
            await self.semantic.close()


def _answered_by_route(ctx: RequestContext) -> bool:
    """The answer came from one of the route's own deployments, not a fallback or a pinned provider.

    The cache key names those deployments (or a route whose every deployment the caller may use), so an answer
    is only ever served to a caller that may use the deployment that gave it.
    """
    dep, route = ctx.deployment, ctx.route
    if dep is None or route is None:
        return False
    pair = (dep.provider.name, dep.model)
    return any((d.provider.name, d.model) == pair for d in route.deployments)
