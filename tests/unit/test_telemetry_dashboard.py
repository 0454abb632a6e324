"""The Grafana dashboard only queries series the gateway exports, and covers the llm_gateway_* ones."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from llm_gateway.limits.stage import LimitMetrics
from llm_gateway.telemetry.gateway_metrics import GatewayMetrics
from llm_gateway.telemetry.metrics import Histogram, Registry
from llm_gateway.telemetry.recorder import CoreMetrics

DASHBOARD = Path(__file__).parents[2] / "dashboards" / "grafana-llm-gateway.json"
FUNCTIONS = {"sum", "rate", "increase", "histogram_quantile", "topk", "max", "by", "le", "label_values"}


def test_dashboard_queries_exported_series() -> None:
    registry = Registry()
    CoreMetrics(registry)
    GatewayMetrics(registry)
    ours = set(registry.metrics)
    LimitMetrics(registry)  # the limits stage's own llm_gateway_rate_limited_requests_total{scope,limit}
    exported = set()
    for name, metric in registry.metrics.items():
        exported.add(name)
        if isinstance(metric, Histogram):
            exported.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    dash = orjson.loads(DASHBOARD.read_bytes())
    queried = set()
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = re.findall(r"(?<![$\w])([a-z][a-z0-9_]*_[a-z0-9_]+)\b(?!\s*\()", target["expr"])
            queried.update(n for n in names if n not in FUNCTIONS)
    assert queried <= exported, queried - exported
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    gateway_series = {n for n in ours if n.startswith("llm_gateway_") and "user" not in n
                      and n != "llm_gateway_key_requests_total"}
    missing = {n for n in gateway_series if not any(q == n or q.startswith(n + "_") for q in queried)}
    assert missing == set(), missing
