"""Run one aiohttp application on its own event loop in a thread (sync and async tests can both use it)."""

from __future__ import annotations

import asyncio
import ssl
import threading

from aiohttp import web

from tests.upstream import free_port


class AppThread:
    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.port = free_port()
        self.ssl_context = ssl_context
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="test-cloud", daemon=True)

    def start(self) -> AppThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test cloud server did not start")
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        loop.run_until_complete(site.start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
