"""Serve an ASGI application of the gateway's in this process on granian's embedded server, as `llm-gateway` does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from llm_gateway.runner import embedded, server_options
from llm_gateway.settings import ServerConfig
from tests.upstream import free_port


@asynccontextmanager
async def served(app: Any, server: ServerConfig | None = None) -> AsyncIterator[int]:
    """The port `app` answers on while the block runs."""
    port = free_port()
    srv = embedded(app, "127.0.0.1", port, server_options(server or ServerConfig()))
    task = asyncio.get_running_loop().create_task(srv.serve())
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        break
    try:
        yield port
    finally:
        srv.stop()
        await asyncio.wait([task], timeout=5)
