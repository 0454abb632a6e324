"""The core Prometheus series, and the settle stage that updates them for every request."""

from __future__ import annotations

from llm_gateway.pipeline.context import RequestContext
from llm_gateway.telemetry.gateway_metrics import GatewayMetrics
from llm_gateway.telemetry.metrics import Registry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
ANONYMOUS = "anonymous"
UNKNOWN = "unknown"


class CoreMetrics:
    """genai-gateway's nine token counters under their exact names, plus request counts and latencies."""

    def __init__(self, registry: Registry) -> None:
        r = registry
        self.prompt = r.counter("prompt_tokens_total", "Prompt tokens of all requests")
        self.completion = r.counter("completion_tokens_total", "Completion tokens of all requests")
        self.total = r.counter("tokens_total", "Prompt plus completion tokens of all requests")
        self.prompt_by_model = r.counter("prompt_tokens_by_model_total", "Prompt tokens by model", ["model"])
        self.completion_by_model = r.counter("completion_tokens_by_model_total", "Completion tokens by model",
                                             ["model"])
        self.total_by_model = r.counter("tokens_by_model_total", "Tokens by model", ["model"])
        self.prompt_by_user = r.counter("prompt_tokens_by_user_by_model_total", "Prompt tokens by user and model",
                                        ["user", "model"])
        self.completion_by_user = r.counter("completion_tokens_by_user_by_model_total",
                                            "Completion tokens by user and model", ["user", "model"])
        self.total_by_user = r.counter("tokens_by_user_by_model_total", "Tokens by user and model",
                                       ["user", "model"])
        self.requests = r.counter("llm_gateway_requests_total", "Requests by model, provider and HTTP status",
                                  ["model", "provider", "status"])
        self.duration = r.histogram("llm_gateway_request_duration_seconds",
                                    "Time from request received to response complete", ["model", "provider"],
                                    LATENCY_BUCKETS)
        self.ttft = r.histogram("llm_gateway_time_to_first_token_seconds",
                                "Time from request received to the first byte of the answer sent",
                                ["model", "provider"], LATENCY_BUCKETS)
        self.in_flight = r.gauge("llm_gateway_in_flight_requests", "Requests being served")


class MetricsStage:
    def __init__(self, metrics: CoreMetrics, gateway_metrics: GatewayMetrics | None = None) -> None:
        self.m = metrics
        self.g = gateway_metrics

    admit = None  # nothing to do before the upstream call
    records = True  # settles by recording what happened: may run later (pipeline.stack)

    def settle(self, ctx: RequestContext) -> None:
        m = self.m
        # A request that failed authentication or names no configured model is not trusted with a label
        # value: without a key, 20,000 random names would otherwise be 20,000 series.
        model = ctx.model if ctx.route is not None and ctx.status != 401 and ctx.model else UNKNOWN
        provider = ctx.provider or "none"
        m.requests.inc((model, provider, str(ctx.status)))
        if ctx.first_byte_at:
            m.ttft.observe(ctx.ttft, (model, provider))
            m.duration.observe(ctx.latency, (model, provider))
        usage = ctx.usage
        if self.g is not None:
            self.g.observe(ctx, model, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
        if usage is None or (usage.prompt_tokens == 0 and usage.completion_tokens == 0):
            return
        p, c, t = usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
        by_model = (model,)
        by_user = (ctx.user or ANONYMOUS, model)
        m.prompt.inc((), p)
        m.completion.inc((), c)
        m.total.inc((), t)
        m.prompt_by_model.inc(by_model, p)
        m.completion_by_model.inc(by_model, c)
        m.total_by_model.inc(by_model, t)
        m.prompt_by_user.inc(by_user, p)
        m.completion_by_user.inc(by_user, c)
        m.total_by_user.inc(by_user, t)
