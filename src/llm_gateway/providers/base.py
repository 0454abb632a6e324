"""The provider adapter interface: canonical (OpenAI wire) requests in, upstream HTTP requests out, and back.

Adapters translate and never do I/O; `providers/http.py` owns the network. A provider type is one folder under
`providers/` plus one line in `providers/registry.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.errors import GatewayError, UpstreamHTTPError, upstream_error_body
from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.credentials import Refresher
from llm_gateway.providers.sse import EventTranslator
from llm_gateway.providers.transport import Transport
from llm_gateway.providers.wire import Origin, PreparedRequest, Timeouts
from llm_gateway.settings import ProviderConfig

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "ParsedResponse", "PreparedRequest", "Provider", "StreamDecoder",
           "UpstreamCall"]

# The gateway's endpoints, as the canonical (OpenAI) paths; any other `/v1/...` path is a raw pass-through.
CHAT = "chat/completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"


@dataclass(slots=True)
class UpstreamCall:
    """One call to one deployment, in canonical form."""

    endpoint: str  # CHAT, COMPLETIONS, EMBEDDINGS or a raw path below /v1 ("models", "files/abc", ...)
    body: dict[str, Any]  # the OpenAI-shaped request body (already parsed); empty for raw GETs
    model: str  # the model name the provider knows
    stream: bool
    client_wants_usage: bool
    client_auth: str | None  # the client's Authorization header, when it may be forwarded upstream
    client_headers: dict[str, str]
    method: str = "POST"
    query: str = ""
    raw_body: bytes | None = None  # the client's bytes, when they may be forwarded unchanged
    # The client's bytes in the provider's own wire format (see NativeBody), else None: canonical `body` is sent.
    native_body: bytes | None = None


@dataclass(slots=True)
class NativeBody:
    """A request that arrived in a provider's own wire format (e.g. Anthropic Messages at /v1/messages).

    When the deployment called speaks that format (`Provider.native_wire`), the client's bytes go upstream
    unchanged apart from the model name, the answer comes back as it is, and only its usage is read;
    `relay_as_is` tells the client's responder not to translate. Any other deployment gets the canonical body.
    """

    wire: str
    body: bytes
    relay_as_is: Callable[[], None]


NATIVE_BODY = "native_body"  # RequestContext.extensions key of the request's NativeBody
RESPONSES_WIRE = "openai-responses"  # the native wire of /v1/responses (OpenAI's Responses API)


class StreamDecoder(ABC):
    """Turns an upstream response stream into OpenAI `chat.completion.chunk` SSE events."""

    usage: Usage | None = None

    @abstractmethod
    def feed(self, data: bytes) -> bytes:
        """Take the next bytes from upstream; return the complete SSE events (`data: ...\\n\\n`) for the client."""

    @abstractmethod
    def finish(self) -> bytes:
        """The upstream stream ended; return any last events (the final `data: [DONE]` included)."""

    @abstractmethod
    def completion_texts(self) -> list[str]:
        """The generated texts so far (content, tool-call arguments), for counting when no usage came."""


class RelayedStreamDecoder(EventTranslator, StreamDecoder):
    """A native stream relayed to the client unchanged, event by event (`_event` returns each one as it came,
    noting its usage and the generated texts in `usage` and `_texts` on the way)."""

    def __init__(self) -> None:
        super().__init__()
        self._texts: list[str] = []
        self.usage: Usage | None = None

    def completion_texts(self) -> list[str]:
        return self._texts

    def _close(self) -> bytes:
        return b""


@dataclass(slots=True)
class ParsedResponse:
    body: bytes  # OpenAI-shaped JSON for the client
    usage: Usage | None
    completion_texts: list[str] = field(default_factory=list)


class Provider(ABC):
    """One configured provider: where it lives, how to authenticate, how to translate."""

    type: str = ""
    passthrough = False  # True: any /v1/* path may be forwarded as it is
    # Pricing (usage.pricing): the provider's id in the bundled price database; "" to find the provider by
    # `price_url` (an OpenAI-compatible server: a hosted API is known by its URL, a self-hosted one is not).
    price_catalog = ""
    # True when the name the provider knows is a deployment name, not a model name (Azure): the names clients
    # use for it are then tried as model names too.
    prices_by_public_name = False
    native_wire = ""  # a client wire format other than OpenAI's that this provider speaks (see NativeBody)
    # Credentials that expire (cloud identities), kept fresh off the request path; None: static ones.
    refresher: Refresher[Any] | None = None
    auth_modes: tuple[str, ...] = ("api_key",)  # the `auth` values this provider type takes

    def __init__(self, config: ProviderConfig) -> None:
        if config.auth is not None and config.auth not in self.auth_modes:
            raise ValueError(f"providers.{config.name}: auth {config.auth!r} is not available for type "
                             f"{config.type!r} (available: {', '.join(self.auth_modes)})")
        self.config = config
        self.name = config.name
        base = config.base_url or self.default_base_url()
        self.origin, self.base_path = Origin.from_url(base)
        self.price_url = base
        t = config.timeouts
        self.timeouts = Timeouts(connect=t.connect, first_byte=t.first_token, idle=t.idle, total=t.total)
        # How requests reach it; None: the gateway's shared fast client (set by create_app, see providers/egress.py)
        self.transport: Transport | None = None

    def credentials_problem(self) -> str | None:
        """Why this provider's credentials cannot be used now (for /ready and the providers status); None: fine."""
        return self.refresher.status() if self.refresher is not None else None

    def default_base_url(self) -> str:
        raise GatewayError(f"provider {self.name!r} needs a base_url")

    @abstractmethod
    def prepare(self, call: UpstreamCall) -> PreparedRequest:
        """Build the upstream request."""

    @abstractmethod
    def parse(self, call: UpstreamCall, body: bytes) -> ParsedResponse:
        """Turn a successful upstream body into the OpenAI response for the client."""

    @abstractmethod
    def stream_decoder(self, call: UpstreamCall) -> StreamDecoder:
        """A decoder for one streamed response."""

    def error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        """Map an upstream error response to the error the client gets (status kept, body OpenAI-shaped)."""
        out, message, etype = upstream_error_body(status, body)
        extra = {k: v for k, v in headers.items() if k in ("retry-after",)}
        return UpstreamHTTPError(status, message, out, type=etype or "upstream_error", headers=extra)

    def public_models(self) -> list[tuple[str, str]]:
        """(name clients use, name the provider knows) for each configured model; "*" is a wildcard."""
        return [(m.name, m.model or m.name) for m in self.config.model_entries()]
