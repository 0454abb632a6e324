"""Keyless mode's guard against cross-site requests: without a master key anyone who reaches the gateway may call
it, and a web page can make its visitor's browser POST to any address without a CORS preflight (a `text/plain`
body or a form). Such a call would be paid with the gateway's provider keys.

Browsers name the page's origin in `Origin` on every cross-origin POST; programs (SDKs, curl) send none. A request
that changes something, from an origin that is neither the gateway's own nor one `server.cors` allows, gets 403.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from llm_gateway.errors import GatewayError
from llm_gateway.server.asgi import ASGIApp
from llm_gateway.server.http import Message, Receive, Responder, Send

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _host(scope: Message) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"host":
            return bytes(value).lower()
    return None


def refuse_cross_site(app: ASGIApp, allowed: list[str]) -> ASGIApp:
    """`app` behind the check; `allowed`: the origins CORS lets in (`*`: any)."""
    if "*" in allowed:
        return app
    allowed_origins = frozenset(o.rstrip("/").lower().encode("latin-1") for o in allowed)

    async def guarded(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _SAFE:
            origin = None
            for name, value in scope["headers"]:
                if name == b"origin":
                    origin = bytes(value).lower()
                    break
            if origin is not None and origin not in allowed_origins and not _same_origin(origin, _host(scope)):
                responder = Responder(send)
                responder.send_error(GatewayError(
                    "cross-origin request refused: this gateway has no master key, so a web page may not call it "
                    "from a browser unless server.cors allows its origin", status=403,
                    type="permission_error", code="cross_origin_refused"))
                await responder.flush()
                return
        await app(scope, receive, send)

    return guarded


def _same_origin(origin: bytes, host: bytes | None) -> bool:
    """The page is the gateway's own (its dashboard): the origin's host and port are the request's `Host`."""
    if host is None or origin == b"null":
        return False
    try:
        netloc = urlsplit(origin.decode("latin-1")).netloc
    except ValueError:
        return False
    return netloc.encode("latin-1") == host
