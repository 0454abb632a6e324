"""The raw ASGI pass-through app used by every uvicorn variant; `forward(body) -> (status, bytes)` is the client."""

from collections.abc import Awaitable, Callable

import orjson

Forward = Callable[[bytes], Awaitable[tuple[int, bytes]]]
_HEADERS = [(b"content-type", b"application/json")]


def make_app(forward: Forward):
    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            await send({"type": "http.response.start", "status": 404, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        parts = []
        while True:
            msg = await receive()
            parts.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(parts)
        orjson.loads(body)  # the gateway reads the model etc. from the request
        status, data = await forward(body)
        orjson.loads(data)  # and the usage from the answer
        await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": data})

    return app
