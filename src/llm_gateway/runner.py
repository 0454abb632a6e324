"""Runs the gateway under granian: one process on our own uvloop (granian embedded), or granian's supervised
worker processes (`server.workers` > 1, a dead worker is started again). Signals and graceful shutdown.

granian owns the wire (HTTP/1.1 and HTTP/2 framing, head limits and timeouts, TLS); its embedded server runs in
the gateway's event loop, so a single process needs no supervisor beside it (one process less: ~30 MiB).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import uvloop
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings, HTTP2Settings
from granian.server.embed import Server as EmbeddedServer
from granian.server.mp import MPServer

from llm_gateway.app import Gateway, create_app
from llm_gateway.db.engine import SchemaBehind, check_schema, make_engine
from llm_gateway.server.trim import one_malloc_arena
from llm_gateway.settings import GatewayConfig, ServerConfig
from llm_gateway.telemetry.logs import setup_logging

log = logging.getLogger("llm_gateway")


def server_options(srv: ServerConfig) -> dict[str, Any]:
    """granian's settings from ours (the same for the embedded and the supervised server)."""
    limits = srv.limits
    options: dict[str, Any] = {
        "http": HTTPModes.auto if srv.http2 else HTTPModes.http1,
        "websockets": False,
        "backlog": 2048,
        "http1_settings": HTTP1Settings(header_read_timeout=int(limits.head_timeout_s * 1000), keep_alive=True,
                                        max_buffer_size=limits.max_head_kb * 1024),
        "http2_settings": HTTP2Settings(max_headers_size=limits.max_head_kb * 1024,
                                        keep_alive_timeout=int(srv.keepalive_timeout_s)),
        "log_enabled": False,
    }
    tls = srv.tls
    if tls.cert_file and tls.key_file:
        options.update(ssl_cert=Path(tls.cert_file), ssl_key=Path(tls.key_file), ssl_key_password=tls.key_password)
    return options


def embedded(app: Any, host: str, port: int, options: dict[str, Any]) -> EmbeddedServer:
    """granian serving `app` in the running event loop (`await server.serve()`, `server.stop()`)."""
    return EmbeddedServer(app, address=host, port=port, interface=Interfaces.ASGINL, **options)


class MetricsListener:
    """The separate metrics port of one process (worker i listens on metrics_port + i)."""

    def __init__(self, gateway: Gateway, port: int) -> None:
        self.gateway = gateway
        self.port = port
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        srv = self.gateway.config.server
        if not self.port:
            return
        options = {**server_options(srv), "http": HTTPModes.http1}
        options.pop("ssl_cert", None)
        options.pop("ssl_key", None)
        options.pop("ssl_key_password", None)
        server = embedded(self.gateway.metrics_asgi, srv.host, self.port, options)
        task = asyncio.get_running_loop().create_task(server.serve())
        await asyncio.sleep(0.05)  # binding happens at once; a busy port ends the task with an error
        if task.done() and task.exception() is not None:
            log.warning("metrics port %d not available (%s); /metrics is still served on port %d", self.port,
                        task.exception(), srv.port)
            return
        self._server, self._task = server, task

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.stop()  # type: ignore[no-untyped-call]
            await asyncio.wait([self._task], timeout=2)


async def serve_gateway(config: GatewayConfig, stop: asyncio.Event) -> None:
    """One process: the gateway and its metrics listener on granian's embedded server, in this event loop."""
    gateway = create_app(config)
    srv = config.server
    metrics = MetricsListener(gateway, srv.metrics_port)
    await gateway.edge.startup()
    server = embedded(gateway.asgi, srv.host, srv.port, server_options(srv))
    serving = asyncio.get_running_loop().create_task(server.serve())
    await asyncio.sleep(0)
    await metrics.start()
    log.info("llm-gateway listening on %s:%d (metrics on %d), %d provider(s)", srv.host, srv.port,
             srv.metrics_port, len(gateway.providers))
    stopped = asyncio.get_running_loop().create_task(stop.wait())
    done, _ = await asyncio.wait([serving, stopped], return_when=asyncio.FIRST_COMPLETED)
    if serving in done:  # it could not listen
        stopped.cancel()
        await metrics.stop()
        await gateway.shutdown()
        serving.result()
        return
    log.info("shutting down: waiting up to %gs for in-flight requests", srv.shutdown_grace_s)
    server.stop()  # type: ignore[no-untyped-call]
    await gateway.edge.shutdown()  # drains in-flight requests, then the gateway's own shutdown
    await metrics.stop()
    await asyncio.wait([serving], timeout=5)


def _worker_app(config: GatewayConfig, index: int, supervisor: int) -> Any:
    """The ASGI application of supervised worker `index` (built in the worker process)."""
    _hold_stop_signals()
    _die_with_supervisor(supervisor, config.server.shutdown_grace_s)
    setup_logging(config.telemetry)
    gateway = create_app(config, index)
    metrics = MetricsListener(gateway, config.server.metrics_port + index if config.server.metrics_port else 0)
    gateway.edge.startup_hooks.append(metrics.start)
    gateway.edge.startup_hooks.append(_release_stop_signals)  # the last start-up step
    gateway.edge.shutdown_hooks.insert(0, metrics.stop)  # hooks run in reverse: the metrics listener stops last
    return gateway.asgi


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _hold_stop_signals() -> None:
    """A worker's SIGTERM and SIGINT wait until it has started.

    Until granian sets the worker's handlers, the supervisor's, copied by the fork, would swallow them; after
    that, granian's handler blocks for good on a second signal that comes before the worker serves (it hands each
    one to a channel that only the running server empties), leaving a worker that never stops. Held back, any
    number of them arrive as one once start-up is done, and the worker stops as it would while serving."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


async def _release_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _die_with_supervisor(supervisor: int, grace_s: float) -> None:
    """A worker stops when its supervisor dies, even by SIGKILL: no orphaned workers holding the port.

    A thread waits on a pidfd of the supervisor (Linux 5.3+; elsewhere workers outlive a killed supervisor).
    When the supervisor is gone it sends the worker one SIGTERM, a graceful stop that in-flight requests may
    finish; should the worker still run `grace_s` + 5 s later (a start-up that hangs, a stop that never ends),
    it exits at once, so no worker is left behind whatever state it was in.

    `supervisor` is the pid the supervisor had when it forked this worker, not what `getppid` says now: a worker
    forked just before its supervisor was killed finds itself adopted already."""
    try:
        pidfd = os.pidfd_open(supervisor)
    except ProcessLookupError:
        pidfd = -1  # gone already (and reaped)
    except (OSError, AttributeError):
        return  # no pidfd here
    threading.Thread(target=_watch_supervisor, args=(supervisor, pidfd, grace_s + 5),
                     name="supervisor-watch", daemon=True).start()


def _watch_supervisor(supervisor: int, pidfd: int, limit_s: float) -> None:
    if pidfd >= 0:
        if os.getppid() == supervisor:  # else the pid may already name another process
            watch = select.poll()
            watch.register(pidfd, select.POLLIN)
            watch.poll()  # readable once the supervisor has exited
        os.close(pidfd)
    log.warning("the supervisor (pid %d) is gone: this worker stops", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(limit_s)
    log.error("the worker did not stop within %gs of its supervisor's death: exiting now", limit_s)
    logging.shutdown()
    os._exit(1)


class _Supervisor(MPServer):
    """granian's worker supervisor; each worker builds its app knowing its own index (for its metrics port)."""

    def __init__(self, config: GatewayConfig, **options: Any) -> None:
        super().__init__("llm_gateway.asgi:app", **options)  # the target each worker builds is _worker_app
        self._config = config

    def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:  # type: ignore[override]
        return super()._spawn_worker(idx=idx, target=target,
                                     callback_loader=partial(_worker_app, self._config, idx, os.getpid()))


def run(config: GatewayConfig) -> int:
    setup_logging(config.telemetry)
    if not config.database.migrate_on_start:
        # Checked once here, before any worker starts: an old schema is one clear line, not a crash per worker.
        try:
            engine = make_engine(config.database.url)
        except ValueError as exc:  # e.g. a PostgreSQL URL without the [postgres] extra
            log.error("cannot start: %s", exc)
            return 1
        try:
            check_schema(engine)
        except SchemaBehind as exc:
            log.error("cannot start: %s", exc)
            return 1
        finally:
            engine.dispose()
    one_malloc_arena()
    srv = config.server
    if srv.workers > 1 and not config.redis.url and (config.limits.rules or config.auth.master_key):
        log.warning("%d workers and no redis.url: each worker counts limits and budgets on its own, so together "
                    "they admit up to %d times a limit, and a budget's spend reaches the others only with the "
                    "30 s budget reload; set redis.url to share them", srv.workers, srv.workers)
    if srv.workers > 1:
        supervisor = _Supervisor(config, address=srv.host, port=srv.port, interface=Interfaces.ASGI,
                                 workers=srv.workers, loop=Loops.uvloop, respawn_failed_workers=True,
                                 respawn_interval=1.0, workers_kill_timeout=int(srv.shutdown_grace_s) + 5,
                                 **server_options(srv))
        try:
            supervisor.serve()
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return 1
        return 0
    return _run_one(config)


def _run_one(config: GatewayConfig) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_gateway(config, stop)

    try:
        uvloop.run(main())
    except (OSError, ValueError) as exc:  # ValueError: a setting that cannot be built (e.g. a missing extra)
        log.error("cannot start: %s", exc)
        return 1
    return 0
