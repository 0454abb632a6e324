"""`llm_gateway.asgi:app`, the gateway for any ASGI server, configured as `llm-gateway` is without flags: from the
environment (`LLM_GATEWAY_CONFIG`, `OPENAI_DOMAIN`, ...). The gateway is built at lifespan start-up.

    granian --interface asgi llm_gateway.asgi:app     or     uvicorn llm_gateway.asgi:app

`llm-gateway` itself does not go through this module: it runs granian with the flags it was given (runner.py).
"""

from __future__ import annotations

import os

from llm_gateway.app import create_app
from llm_gateway.cli import build_config, build_parser, resolve
from llm_gateway.server.asgi import ASGIApp
from llm_gateway.server.http import Message, Receive, Send
from llm_gateway.telemetry.logs import setup_logging


def create() -> ASGIApp:
    """The gateway's ASGI application from the environment (a factory: `--factory llm_gateway.asgi:create`)."""
    env = dict(os.environ)
    config = build_config(resolve(build_parser().parse_args([]), env), env)
    setup_logging(config.telemetry)
    return create_app(config).asgi


class _BuiltAtStartUp:
    """Builds the application on its first message (the lifespan's start-up), so importing this module is cheap."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = create()
        await self._app(scope, receive, send)


app = _BuiltAtStartUp()
