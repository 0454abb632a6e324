"""The library transport (aiohttp): upstream requests through an egress proxy, with a provider's CA or client cert.

Slower per request than the fast client (providers/http.py) but it speaks CONNECT and absolute-URI proxying
and takes any TLS context; only providers that need those use it (providers/egress.py decides).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable

import aiohttp
from yarl import URL

from llm_gateway.errors import UpstreamTimeout, UpstreamUnavailable
from llm_gateway.providers.transport import Transport
from llm_gateway.providers.wire import Origin, PreparedRequest, Timeouts, render_head

log = logging.getLogger("llm_gateway.upstream")
# aiohttp adds these unless told not to; the provider adapter decides what goes upstream.
_NOT_AUTOMATIC = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class LibraryTransport(Transport):
    def __init__(self, proxy: str | None, ssl_context: ssl.SSLContext | None) -> None:
        url = URL(proxy) if proxy else None
        # Credentials in the proxy's URL (`http://user:password@proxy:3128`) go as Proxy-Authorization, never
        # to the log: the proxy is shown by host and port.
        self._proxy_auth = aiohttp.BasicAuth(url.user, url.password or "") if url and url.user else None
        self._proxy = url.with_user(None) if url else None
        self._proxy_origin = Origin.from_url(str(self._proxy))[0] if self._proxy else None
        self.ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def reach(self, origin: Origin) -> Origin:
        return self._proxy_origin or origin

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context or True, limit=0)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  skip_auto_headers=_NOT_AUTOMATIC, trust_env=False)
        return self._session

    async def send(self, origin: Origin, request: PreparedRequest, timeouts: Timeouts, *, label: str = "upstream",
                   first_body: bool = False, after_write: Callable[[], None] | None = None) -> LibraryResponse:
        render_head(request, origin.host_header)  # the one check of what goes on the wire (raises, sends nothing)
        url = URL(f"{origin.scheme}://{origin.host_header}{request.path}", encoded=True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_deadline = started + min(timeouts.first_byte, timeouts.total)
        timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_connect=timeouts.connect)
        try:
            async with asyncio.timeout_at(first_deadline):
                raw = await self._open_session().request(
                    request.method, url, headers=request.headers, data=request.body or None, proxy=self._proxy,
                    proxy_auth=self._proxy_auth, timeout=timeout, allow_redirects=False)
        except TimeoutError:
            log.warning("upstream %s at %s: no response within %gs", label, origin.host_header,
                        first_deadline - started)
            raise UpstreamTimeout(f"upstream {label} sent no response within {first_deadline - started:g}s") from None
        except aiohttp.ClientError as exc:
            via = self._proxy_origin.host_header if self._proxy_origin else "none"
            log.warning("upstream %s at %s (proxy %s) unreachable: %s", label, origin.host_header, via, exc)
            raise UpstreamUnavailable(f"upstream {label} unreachable") from None
        if after_write is not None:
            after_write()
        response = LibraryResponse(raw, label, timeouts, started, first_deadline)
        if first_body:
            await response.wait_body()
        return response

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class LibraryResponse:
    """An aiohttp response behind the reading API of the fast client's responses."""

    def __init__(self, raw: aiohttp.ClientResponse, label: str, timeouts: Timeouts, started: float,
                 first_deadline: float) -> None:
        self._raw = raw
        self._label = label
        self.status = raw.status
        self.headers = [(k.lower(), v) for k, v in raw.raw_headers]
        self._idle = timeouts.idle
        self._deadline = started + timeouts.total
        self._first_deadline = first_deadline
        self._pending = b""  # the first body bytes, read by wait_body() and not yet handed out
        self._got_body = False
        self._ended = False

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def _next(self) -> bytes:
        """The next body bytes; b"" at the end. Timeouts and broken connections raise as gateway errors."""
        if self._ended:
            return b""
        loop = asyncio.get_running_loop()
        deadline = min(loop.time() + self._idle, self._deadline) if self._got_body else self._first_deadline
        try:
            async with asyncio.timeout_at(deadline):
                data = await self._raw.content.readany()
        except TimeoutError:
            self.release()
            what = "went silent mid-response" if self._got_body else "sent no first token in time"
            raise UpstreamTimeout(f"upstream {self._label} {what}") from None
        except aiohttp.ClientError as exc:
            self.release()
            log.warning("upstream %s: %s", self._label, exc)
            raise UpstreamUnavailable(f"upstream {self._label} broke the connection") from None
        self._got_body = True
        self._ended = not data
        return data

    async def wait_body(self) -> None:
        if not self._pending:
            self._pending = await self._next()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            if self._pending:
                data, self._pending = self._pending, b""
                yield data
            while data := await self._next():
                yield data
        finally:
            self.release()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self) -> None:
        if self._ended:
            self._raw.release()  # read whole: the connection may serve the next request
        else:
            self._raw.close()
