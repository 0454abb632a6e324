"""The transport interface in front of the upstream client: one request out, a streamed response back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from llm_gateway.providers.wire import Origin, PreparedRequest, Timeouts


class Response(Protocol):
    """A response whose head has arrived; the body is read with `read()` or iterated with `chunks()`."""

    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-cased

    def header(self, name: bytes) -> str | None: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def wait_body(self) -> None:
        """Wait until the first body bytes arrived or the body ended; nothing is consumed."""

    def release(self) -> None:
        """Done with the body: the connection goes back to its pool when it was read whole."""


class Transport(ABC):
    """Sends upstream requests. The fast client (providers/http.py) is the default; the library one
    (providers/library_transport.py) serves providers behind an egress proxy or with a client certificate."""

    @abstractmethod
    async def send(self, origin: Origin, request: PreparedRequest, timeouts: Timeouts, *, label: str = "upstream",
                   first_body: bool = False, after_write: Callable[[], None] | None = None) -> Response:
        """Send `request` (its head rendered by `wire.render_head`) to `origin`.

        Returns once the response head arrived; with `first_body`, once the first body bytes did too (or the
        response ended). `after_write` is called once the request is on its way, while the upstream works on
        it. Failures raise UpstreamUnavailable / UpstreamTimeout naming `label` (the provider), never a host.
        """

    def reach(self, origin: Origin) -> Origin:
        """Where connections for `origin` open (an egress proxy, when there is one): what readiness probes."""
        return origin

    def shed_idle(self, keep: int = 16) -> None:
        """After a burst: keep at most `keep` idle connections per origin."""
        return None

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""
