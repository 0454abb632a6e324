"""The Anthropic-compatible HTTP edge: POST /v1/messages and /v1/messages/count_tokens, for any model.

A Messages request becomes the canonical OpenAI chat body and takes the same path as /v1/chat/completions
(`OpenAIApi.proxy`: pipeline, dispatch, settle); the answer is translated back by the responder it is given.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.api.anthropic_stream import MessagesStreamEncoder
from llm_gateway.api.anthropic_wire import error_body, error_object, to_message, to_openai_request
from llm_gateway.api.openai import OpenAIApi, parse_body, request_id_of
from llm_gateway.errors import UNTRANSLATABLE, GatewayError, NotFound, UpstreamHTTPError, untranslatable
from llm_gateway.providers.base import CHAT, NativeBody
from llm_gateway.routing.catalog import Catalog
from llm_gateway.server.http import Request, Responder, WrappingResponder

OVERLOADED = 529
MESSAGES_WIRE = "anthropic"  # the wire format of this edge, as providers name it in `native_wire`


def with_request_id(headers: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The headers plus `request-id`, where the anthropic SDK looks for the id (`x-request-id` is kept too)."""
    out = list(headers or ())
    names = {k for k, _ in out}
    if "request-id" not in names:
        out.extend(("request-id", v) for k, v in headers or () if k == "x-request-id")
    return out


class MessagesResponder(WrappingResponder):
    """Writes OpenAI-shaped answers to the client in the Messages wire format."""

    __slots__ = ("_encoder", "_model", "_native")

    def __init__(self, inner: Responder, model: str) -> None:
        super().__init__(inner)
        self._model = model
        self._encoder: MessagesStreamEncoder | None = None
        self._native = False

    def relay_as_is(self) -> None:
        """The upstream answers in the Messages format itself: its bytes go to the client untranslated."""
        self._native = True

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
             content_type: bytes = b"application/json") -> None:
        headers = with_request_id(headers)
        if status == 200 and self._native:
            pass
        elif status == 200:
            try:
                body = orjson.dumps(to_message(orjson.loads(body), self._model))
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                status, body = 502, orjson.dumps(error_object(502, "the upstream answer could not be translated"))
        elif status >= 400:
            body = error_body(status, body)
        self._inner.send(status, body, headers, b"application/json")

    def send_error(self, err: GatewayError, headers: list[tuple[str, str]] | None = None) -> None:
        # Anthropic's "overloaded" is 529: its SDK raises OverloadedError only for that status
        if isinstance(err, UpstreamHTTPError) and err.upstream_status == OVERLOADED:
            extra = [*(headers or ()), *err.headers.items()]
            self.send(OVERLOADED, err.body(), extra)
            return
        super().send_error(err, headers)

    def prepare(self, status: int, headers: list[tuple[str, str]],
                content_type: bytes = b"text/event-stream") -> None:
        self._inner.prepare(status, with_request_id(headers), content_type)

    def start(self, status: int, headers: list[tuple[str, str]],
              content_type: bytes = b"text/event-stream") -> None:
        if not self._native:
            self._encoder = MessagesStreamEncoder(self._model)
        self._inner.start(status, with_request_id(headers), content_type)

    async def write(self, data: bytes) -> None:
        if self._native:
            await self._inner.write(data)
        elif self._encoder is not None:
            await self._inner.write(self._encoder.feed(data))

    def end(self, tail: bytes = b"") -> None:
        if self._encoder is not None and not self._encoder.done:
            tail += self._encoder.finish()
        self._inner.end(tail)

    async def flush(self) -> None:
        await self._inner.flush()

    async def flush_head(self) -> None:
        await self._inner.flush_head()


class MessagesApi:
    def __init__(self, openai: OpenAIApi, catalog: Catalog, counter: TokenCounter) -> None:
        self.openai = openai
        self.catalog = catalog
        self.counter = counter

    def _canonical(self, request: Request, counting: bool = False) -> dict[str, Any]:
        body = parse_body(request, self.openai.forward_client_auth)
        try:
            return to_openai_request(body, counting)
        except UNTRANSLATABLE as exc:  # `metadata: "x"`, a text block whose text is a number
            raise untranslatable("Anthropic Messages") from exc

    @staticmethod
    def _reject(request: Request, responder: Responder, err: GatewayError) -> None:
        headers = with_request_id([("x-request-id", request_id_of(request)), *err.headers.items()])
        responder.send(err.status, orjson.dumps(error_object(err.status, err.message)), headers)

    async def create(self, request: Request, responder: Responder) -> None:
        try:
            body = self._canonical(request)
        except GatewayError as err:
            self._reject(request, responder, err)
            return
        headers = dict(request.headers)
        api_key = headers.get("x-api-key")
        if api_key and "authorization" not in headers:
            headers["authorization"] = f"Bearer {api_key}"  # the gateway's keys arrive either way
        headers["content-type"] = "application/json"
        # the canonical body, as if it had come to /v1/chat/completions (the path stays, for logs and traces)
        inner = Request("POST", request.path, request.query, headers, orjson.dumps(body), request.client)
        messages = MessagesResponder(responder, body["model"])
        # a deployment that speaks Messages itself gets the client's own bytes (see NativeBody)
        native = NativeBody(MESSAGES_WIRE, request.body, messages.relay_as_is)
        await self.openai.proxy(inner, messages, CHAT, native)

    async def count_tokens(self, request: Request, responder: Responder) -> None:
        """Counted locally with the gateway's tokenizer, whatever the model's provider; only for a valid key."""
        try:
            access = await self.openai.access_of(request.headers) if self.openai.access_of is not None else None
            body = self._canonical(request, counting=True)
            model = body["model"]
            route = self.catalog.resolve(model)
            if access is not None:  # the same decision as a request would get
                route = access.counted(model, route)
            if route is None:
                raise NotFound(f"model: {model!r} is not served by this gateway", param="model")
            upstream = route.deployments[0].model if route.deployments else model
            count = self.counter.count_prompt(body, upstream)
        except GatewayError as err:
            self._reject(request, responder, err)
            return
        responder.send(200, orjson.dumps({"input_tokens": count}),
                       with_request_id([("x-request-id", request_id_of(request))]))
