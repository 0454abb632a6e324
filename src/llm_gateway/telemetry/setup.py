"""Builds the telemetry parts from the config: metrics, attempt hook, access log and (if on) tracing."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from llm_gateway.pipeline.stack import Stage
from llm_gateway.settings import GatewayConfig, TracingConfig
from llm_gateway.telemetry.access_log import AccessLogStage, LineWriter
from llm_gateway.telemetry.attempts import AttemptRecorder
from llm_gateway.telemetry.gateway_metrics import GatewayMetrics
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.telemetry.recorder import CoreMetrics, MetricsStage
from llm_gateway.telemetry.redact import Redactor


def configured_secrets(config: GatewayConfig) -> list[str]:
    """Every secret the configuration holds: these never appear in logs or spans."""
    secrets = [p.api_key for p in config.providers if p.api_key]
    secrets += [v for p in config.providers for k, v in p.headers.items()
                if k.lower() in ("authorization", "api-key", "x-api-key")]
    if config.auth.master_key:
        secrets.append(config.auth.master_key)
    secrets += [v for k, v in config.telemetry.tracing.headers.items()]
    return secrets


def tracing_enabled(config: TracingConfig, env: Mapping[str, str]) -> bool:
    """Config turns tracing on; so does the standard OTEL_TRACES_EXPORTER=otlp. OTEL_SDK_DISABLED wins."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return config.enabled or env.get("OTEL_TRACES_EXPORTER", "").lower() == "otlp"


class Telemetry:
    """What create_app wires: `stages` settle last (they read what every other stage set)."""

    def __init__(self, config: GatewayConfig, registry: Registry, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        t = config.telemetry
        self.core = CoreMetrics(registry)
        self.metrics = GatewayMetrics(registry, user_labels=t.metrics_user_labels)
        self.attempts = AttemptRecorder(self.metrics)
        self.redactor = Redactor(configured_secrets(config))
        self.stages: list[Stage] = [MetricsStage(self.core, self.metrics)]
        self.access_log: AccessLogStage | None = None
        if t.access_log:
            self.access_log = AccessLogStage(LineWriter.open(t.access_log_path), t.log_format, t.log_bodies,
                                             self.redactor)
            self.stages.append(self.access_log)
        self.tracing: Any = None
        # opentelemetry is imported only here and only when tracing is on: off costs no import and no work.
        if tracing_enabled(t.tracing, env):
            try:
                module = importlib.import_module("llm_gateway.telemetry.tracing")
            except ImportError as exc:
                raise RuntimeError(f"telemetry.tracing is on but OpenTelemetry is not installed ({exc.name}): "
                                   "pip install 'llm-gateway[otel]'") from None
            self.tracing = module.Tracing(t.tracing, self.redactor, env)
            self.stages.append(self.tracing)

    async def close(self) -> None:
        if self.access_log is not None:
            await self.access_log.close()
        if self.tracing is not None:
            await self.tracing.close()
