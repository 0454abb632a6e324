"""Runs a gateway process: event loop (uvloop), listeners, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from llm_gateway.app import create_app
from llm_gateway.server.http import ServerState, serve, shutdown
from llm_gateway.settings import GatewayConfig

log = logging.getLogger("llm_gateway")


async def serve_gateway(config: GatewayConfig, stop: asyncio.Event) -> None:
    gateway = create_app(config)
    srv = config.server
    state = ServerState(gateway.router, int(srv.max_body_mb * 1024 * 1024), srv.keepalive_timeout_s)
    await gateway.startup()
    servers = [await serve(state, srv.host, srv.port, reuse_port=srv.workers > 1)]
    metrics_state = ServerState(gateway.metrics_router, 1024 * 1024)
    if srv.metrics_port:
        try:
            servers.append(await serve(metrics_state, srv.host, srv.metrics_port, reuse_port=srv.workers > 1))
        except OSError as exc:
            log.warning("metrics port %d not available (%s); /metrics is still served on port %d",
                        srv.metrics_port, exc.strerror, srv.port)
    log.info("llm-gateway listening on %s:%d (metrics on %d), %d provider(s)", srv.host, srv.port,
             srv.metrics_port, len(gateway.providers))
    await stop.wait()
    log.info("shutting down: waiting up to %gs for in-flight requests", srv.shutdown_grace_s)
    await shutdown(state, servers, srv.shutdown_grace_s)
    await shutdown(metrics_state, [], 1.0)
    await gateway.shutdown()


def run(config: GatewayConfig) -> int:
    logging.basicConfig(level=config.telemetry.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_gateway(config, stop)

    try:
        uvloop.run(main())
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
