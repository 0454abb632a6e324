"""Runs a gateway process: event loop (uvloop), listeners, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal

import uvloop

from llm_gateway.app import create_app
from llm_gateway.server.busy_poll import BusyPoll
from llm_gateway.server.http import ServerState, serve, shutdown
from llm_gateway.server.trim import IdleTrimmer, freeze_start_up, one_malloc_arena
from llm_gateway.settings import GatewayConfig
from llm_gateway.telemetry.logs import setup_logging

log = logging.getLogger("llm_gateway")
_PR_SET_PDEATHSIG = 1


async def serve_gateway(config: GatewayConfig, stop: asyncio.Event, worker: int = 0) -> None:
    gateway = create_app(config, worker)
    srv = config.server
    metrics_port = srv.metrics_port + worker if srv.metrics_port else 0
    state = ServerState(gateway.router, int(srv.max_body_mb * 1024 * 1024), srv.keepalive_timeout_s)
    if srv.busy_poll_us:
        state.busy_poll = gateway.client.busy_poll = BusyPoll(asyncio.get_running_loop(), srv.busy_poll_us / 1e6,
                                                              gateway.idle_work)
    await gateway.startup()
    log.debug("start-up built %d objects for good: frozen out of garbage collection", freeze_start_up())
    servers = [await serve(state, srv.host, srv.port, reuse_port=srv.workers > 1)]
    metrics_state = ServerState(gateway.metrics_router, 1024 * 1024)
    if metrics_port:
        try:
            servers.append(await serve(metrics_state, srv.host, metrics_port, reuse_port=srv.workers > 1))
        except OSError as exc:
            log.warning("metrics port %d not available (%s); /metrics is still served on port %d",
                        metrics_port, exc.strerror, srv.port)
    log.info("llm-gateway listening on %s:%d (metrics on %d), %d provider(s)", srv.host, srv.port,
             metrics_port, len(gateway.providers))
    trimmer = IdleTrimmer(lambda: len(state.tasks), lambda: state.peak_tasks, lambda: _reset_peak(state),
                          gateway.client.shed_idle)
    trimmer.start()
    await stop.wait()
    await trimmer.stop()
    log.info("shutting down: waiting up to %gs for in-flight requests", srv.shutdown_grace_s)
    await shutdown(state, servers, srv.shutdown_grace_s)
    await shutdown(metrics_state, [], 1.0)
    await gateway.shutdown()


def _reset_peak(state: ServerState) -> None:
    state.peak_tasks = 0


def run(config: GatewayConfig) -> int:
    setup_logging(config.telemetry)
    one_malloc_arena()
    if config.server.workers > 1:
        return _supervise(config)
    return _run_one(config)


def _supervise(config: GatewayConfig) -> int:
    """Fork one process per worker; they share the port (SO_REUSEPORT) and state through Redis/the database.

    Each worker keeps its own metrics and serves them on its metrics listener, `metrics_port + i` for worker i;
    `/metrics` on the gateway's port adds up every worker's.
    """
    children: list[int] = []
    parent = os.getpid()
    for index in range(config.server.workers):
        pid = os.fork()
        if pid == 0:
            _die_with(parent)
            os._exit(_run_one(config, index))
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


def _die_with(parent: int) -> None:
    """A worker gets SIGTERM (a graceful stop) when its supervisor dies, even by SIGKILL: no orphaned workers
    holding the port. Linux only; elsewhere workers outlive a killed supervisor."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _run_one(config: GatewayConfig, worker: int = 0) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_gateway(config, stop, worker)

    try:
        uvloop.run(main())
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
