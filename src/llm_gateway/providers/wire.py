"""What an upstream request is (origin, request, timeouts), and the one place its head is rendered and checked.

Every transport writes request lines and headers through `render_head`, which refuses CR, LF and NUL: a value
that carries them would end the header early and let whoever chose it write headers or a second request of
their own, with the provider's key on the connection. Configured values are checked when the config loads
(settings.py), so a refusal here means the bytes came from the client: a 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from llm_gateway.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal (RFC 3986 host)
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @classmethod
    def from_url(cls, url: str) -> tuple[Origin, str]:
        """Split a base URL into its origin and path prefix (without a trailing slash)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port), parts.path.rstrip("/")


@dataclass(slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 600.0
    idle: float = 600.0
    total: float = 3600.0


@dataclass(slots=True)
class PreparedRequest:
    method: str
    path: str  # the request target, with query string
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    dropped: tuple[str, ...] = ()  # parameters the provider cannot take, left out (reported to the client)


class UnsafeUpstreamRequest(BadRequest):
    code = "invalid_upstream_request"


def path_segment(name: str) -> str:
    """`name` (a model or deployment, which a wildcard route lets the client choose) as one segment of a provider's
    URL path. Slashes are encoded; `.` and `..` cannot be, as URL resolution removes them wherever the path is
    read: the request would go, with the provider's credentials, to another path of its API."""
    if name in (".", ".."):
        raise BadRequest(f"the model name {name!r} is not a model", param="model", code="invalid_model")
    return quote(name, safe="")


def render_head(request: PreparedRequest, host: str) -> bytes:
    """The request line and headers, `Host` and `Content-Length` included, ending with the empty line.

    One scan per character class over the rendered head rather than one per value: each line written here
    ends in exactly one CR LF, so any other CR or LF shows as a surplus count.
    """
    headers = request.headers
    head = "".join([f"{request.method} {request.path} HTTP/1.1\r\nHost: {host}\r\n",
                    *[f"{k}: {v}\r\n" for k, v in headers],
                    f"Content-Length: {len(request.body)}\r\n\r\n"])
    lines = len(headers) + 4  # request line, Host, the headers, Content-Length, the empty line
    if head.count("\n") != lines or head.count("\r") != lines or "\0" in head or " " in request.path:
        raise _refusal(request)
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError:
        raise _refusal(request) from None


def _refusal(request: PreparedRequest) -> UnsafeUpstreamRequest:
    """Name where the bad bytes are, never the value (it may be a credential)."""
    where = "the request target"
    if _clean(request.method) and _clean(request.path) and " " not in request.path:
        for name, value in request.headers:
            if not (_clean(name) and _clean(value)):
                where = f"header {name!r}" if _clean(name) else "a header name"
                break
    return UnsafeUpstreamRequest(f"the upstream request would carry CR, LF, NUL or a character outside "
                                 f"Latin-1 in {where}: refused, nothing was sent")


def _clean(text: str) -> bool:
    if "\r" in text or "\n" in text or "\0" in text:
        return False
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
