"""llm-gateway's own Prometheus series (`llm_gateway_*`) and the small API other parts record through.

Label sets are bounded: models, providers, key aliases, teams and fixed enums. Users appear in labels only
when `telemetry.metrics_user_labels` is on (genai-gateway's user×model token counters in recorder.py are the
documented exception).
"""

from __future__ import annotations

from collections.abc import Callable

from llm_gateway.pipeline.context import RequestContext
from llm_gateway.telemetry.fields import (
    CACHE_HIT,
    CACHE_MISS,
    cache_result,
    cost_of,
    key_alias_of,
    limit_scope_of,
    team_of,
)
from llm_gateway.telemetry.metrics import Registry

UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
NO_KEY = "none"
NO_TEAM = "none"


class GatewayMetrics:
    """Created once in create_app; stages and the dispatcher record through its methods."""

    def __init__(self, registry: Registry, *, user_labels: bool = False) -> None:
        r = registry
        self.user_labels = user_labels
        self.tokens = r.counter("llm_gateway_tokens_total", "Tokens by type (prompt, completion) and model",
                                ["type", "model"])
        self.cost = r.counter("llm_gateway_cost_total", "Cost of all requests in USD")
        self.model_cost = r.counter("llm_gateway_model_cost_total", "Cost in USD by model", ["model"])
        self.key_cost = r.counter("llm_gateway_key_cost_total", "Cost in USD by virtual key alias", ["key"])
        self.team_cost = r.counter("llm_gateway_team_cost_total", "Cost in USD by team", ["team"])
        self.user_cost = r.counter("llm_gateway_user_cost_total",
                                   "Cost in USD by user (only with telemetry.metrics_user_labels)", ["user"])
        self.user_tokens = r.counter("llm_gateway_user_tokens_total",
                                     "Tokens by user (only with telemetry.metrics_user_labels)", ["user"])
        self.key_requests = r.counter("llm_gateway_key_requests_total", "Requests by virtual key alias and status",
                                      ["key", "status"])
        self.cache_hits = r.counter("llm_gateway_cache_hits_total", "Responses served from the cache")
        self.cache_misses = r.counter("llm_gateway_cache_misses_total", "Cache lookups that found nothing")
        self.provider_requests = r.counter("llm_gateway_provider_requests_total",
                                           "Upstream attempts by provider", ["provider"])
        self.provider_errors = r.counter("llm_gateway_provider_errors_total",
                                         "Failed upstream attempts by provider and error type",
                                         ["provider", "type"])
        self.retries = r.counter("llm_gateway_retries_total", "Retried upstream attempts", ["provider"])
        self.fallbacks = r.counter("llm_gateway_fallbacks_total", "Attempts on a fallback model", ["provider"])
        self.hedges = r.counter("llm_gateway_hedges_total", "Hedged (parallel) upstream attempts", ["provider"])
        self.upstream_latency = r.histogram("llm_gateway_upstream_latency_seconds",
                                            "Upstream attempt time until the response head (or failure)",
                                            ["provider"], UPSTREAM_BUCKETS)
        self.upstream_ttft = r.histogram("llm_gateway_upstream_ttft_seconds",
                                         "Time from the answering attempt's start to the first byte sent",
                                         ["provider"], UPSTREAM_BUCKETS)
        self.ledger_backlog = r.gauge("llm_gateway_ledger_backlog", "Usage records waiting to be written")
        self.limit_rejections = r.counter("llm_gateway_limit_rejections_total",
                                          "Requests rejected by a limit or budget, by scope", ["scope"])
        self._kind_counters = {"retry": self.retries, "fallback": self.fallbacks, "hedge": self.hedges}

    # -- the recording API for other parts
    def attempt(self, provider: str, kind: str, seconds: float, error_type: str = "") -> None:
        """One upstream attempt finished its head (or failed); called by the attempt hook."""
        key = (provider,)
        self.provider_requests.inc(key)
        self.upstream_latency.observe(seconds, key)
        if error_type:
            self.provider_errors.inc((provider, error_type))
        counter = self._kind_counters.get(kind)
        if counter is not None:
            counter.inc(key)

    def limit_rejected(self, scope: str) -> None:
        """A limit or budget of `scope` (key, user, team, model, ...) rejected a request.

        Limit stages either call this or set `ctx.extensions["limit_scope"]` (counted in settle), not both.
        """
        self.limit_rejections.inc((scope or "unknown",))

    def watch_ledger_backlog(self, read: Callable[[], float]) -> None:
        """The ledger gives a function returning its queue length; it is read at scrape time only."""
        self.ledger_backlog.read_from(read)

    # -- settle
    def observe(self, ctx: RequestContext, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens.inc(("prompt", model), prompt)
        if completion:
            self.tokens.inc(("completion", model), completion)
        key = key_alias_of(ctx) or NO_KEY
        if ctx.key is not None:
            self.key_requests.inc((key, str(ctx.status)))
        cost = cost_of(ctx)
        if cost:
            self.cost.inc((), cost)
            self.model_cost.inc((model,), cost)
            self.key_cost.inc((key,), cost)
            self.team_cost.inc((team_of(ctx) or NO_TEAM,), cost)
        if self.user_labels and ctx.user:
            if cost:
                self.user_cost.inc((ctx.user,), cost)
            if prompt or completion:
                self.user_tokens.inc((ctx.user,), prompt + completion)
        scope = limit_scope_of(ctx)
        if scope:
            self.limit_rejections.inc((scope,))
        cache = cache_result(ctx)
        if cache == CACHE_HIT:
            self.cache_hits.inc()
        elif cache == CACHE_MISS:
            self.cache_misses.inc()
        log = ctx.attempt_log
        if log and ctx.first_byte_at and cache != CACHE_HIT:
            last = log[-1]
            if last.ok:
                self.upstream_ttft.observe(ctx.first_byte_at - last.started, (last.provider,))
