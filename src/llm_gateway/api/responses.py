"""The Responses API edge: POST /v1/responses for any model, and the stored responses' GET, DELETE, input_items.

A Responses request becomes the canonical chat body and takes the same path as /v1/chat/completions
(`OpenAIApi.proxy`: pipeline, dispatch, settle), as /v1/messages does; `ResponsesWriter` writes the answer back as
a Response object or Responses stream events. A deployment that speaks the Responses API itself gets the
client's request as it came (see NativeBody). `previous_response_id` is rebuilt from the gateway's own store,
so a chain may move between providers; a stored response is written before its client sees it complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from llm_gateway.api.openai import OpenAIApi, parse_body, request_id_of
from llm_gateway.api.responses_stream import NativeStreamTap, ResponsesStreamEncoder
from llm_gateway.api.responses_wire import (
    Names,
    echo_of,
    history_for_native,
    input_items,
    new_id,
    to_chat_request,
    to_response,
)
from llm_gateway.errors import UNTRANSLATABLE, BadRequest, GatewayError, NotFound, untranslatable
from llm_gateway.keys.model import KeyRecord, Principal
from llm_gateway.providers.base import CHAT, RESPONSES_WIRE, NativeBody
from llm_gateway.responses.store import ResponseStore, conversation, owner_of
from llm_gateway.server.http import Request, Responder, WrappingResponder

log = logging.getLogger("llm_gateway.responses")
DROPPED_TOOLS_HEADER = "x-gateway-dropped-tools"
PURGE_EVERY_S = 3600.0

Identify = Callable[[dict[str, str]], Awaitable[KeyRecord | Principal | None]]
Save = Callable[[dict[str, Any]], Awaitable[None]]


class ResponsesWriter(WrappingResponder):
    """Writes OpenAI chat answers to the client as Responses (or relays a native Responses answer with the
    gateway's id); `save` stores the finished Response before its last event or its body leaves."""

    __slots__ = ("_dropped", "_echo", "_encoder", "_held", "_model", "_names", "_native", "_rid", "_save", "_saved")

    def __init__(self, inner: Responder, rid: str, model: str, echo: dict[str, Any], names: Names,
                 save: Save | None, dropped: list[str]) -> None:
        super().__init__(inner)
        self._names = names
        self._rid = rid
        self._model = model
        self._echo = echo
        self._save = save
        self._saved = False
        self._dropped = dropped  # built-in tool types a translated answer went without
        self._native = False
        self._encoder: ResponsesStreamEncoder | NativeStreamTap | None = None
        self._held: tuple[int, bytes, list[tuple[str, str]], dict[str, Any] | None] | None = None

    def relay_as_is(self) -> None:
        self._native = True

    # a whole answer held until it is stored counts as started and finished
    @property
    def started(self) -> bool:
        return self._held is not None or self._inner.started

    @started.setter
    def started(self, value: bool) -> None:
        self._inner.started = value

    @property
    def finished(self) -> bool:
        return self._held is not None or self._inner.finished

    @finished.setter
    def finished(self, value: bool) -> None:
        self._inner.finished = value

    def _patch(self) -> dict[str, Any]:
        """What a native answer's Response objects take from the gateway: its id, and the chain it continues."""
        return {"id": self._rid, "previous_response_id": self._echo.get("previous_response_id")}

    def _headers(self, headers: list[tuple[str, str]] | None, final: bool = True) -> list[tuple[str, str]]:
        """The answer's headers; a translated answer names the built-in tools it went without."""
        if not self._dropped or self._native:  # a native deployment got the tools as they were sent
            return list(headers or ())
        names = ",".join(self._dropped)
        if final:
            log.info("built-in tools dropped from a /v1/responses request for model %r: %s", self._model, names)
        return [*(headers or ()), (DROPPED_TOOLS_HEADER, names)]

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
             content_type: bytes = b"application/json") -> None:
        if self.started:
            return
        final = None
        if status == 200:
            try:
                parsed = orjson.loads(body)
                if self._native:
                    parsed.update(self._patch())
                    final = parsed
                else:
                    final = to_response(parsed, self._rid, self._model, self._echo, self._names)
                body = orjson.dumps(final)
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                status, body = 502, orjson.dumps({"error": {
                    "message": "the upstream answer could not be translated", "type": "upstream_error",
                    "code": "bad_upstream_response", "param": None}})
        self._held = (status, body, self._headers(headers), final)  # sent by flush, once stored

    async def _store(self, final: dict[str, Any] | None) -> None:
        if final is None or self._save is None or self._saved:
            return
        self._saved = True
        try:
            await self._save(final)
        except Exception:  # the answer still goes out; the next turn cannot chain on it
            log.exception("response %s could not be stored", self._rid)

    async def flush(self) -> None:
        if self._held is not None:
            (status, body, headers, final), self._held = self._held, None
            await self._store(final)
            self._inner.send(status, body, headers, b"application/json")
        elif self._encoder is not None and self._encoder.done:
            await self._store(self._encoder.final)
        await self._inner.flush()

    def prepare(self, status: int, headers: list[tuple[str, str]],
                content_type: bytes = b"text/event-stream") -> None:
        self._inner.prepare(status, self._headers(headers, final=False), content_type)

    def start(self, status: int, headers: list[tuple[str, str]],
              content_type: bytes = b"text/event-stream") -> None:
        self._encoder = NativeStreamTap(self._rid, self._patch()) if self._native else ResponsesStreamEncoder(
            self._rid, self._model, self._echo, self._names)
        self._inner.start(status, self._headers(headers), content_type)

    @property
    def done(self) -> bool:
        """The stream's last event went to the client: what the upstream still sends is not for it."""
        return self._encoder is not None and self._encoder.done and self._inner.finished

    async def write(self, data: bytes) -> None:
        encoder = self._encoder
        if encoder is None or self.done:
            return
        out = encoder.feed(data)
        if encoder.done:
            await self._store(encoder.final)
        if out:
            await self._inner.write(out)
        if encoder.done:  # the client has it all (agents hang up here): the response ends now
            self._inner.end()
            await self._inner.flush()

    def end(self, tail: bytes = b"") -> None:
        encoder = self._encoder
        if encoder is not None:
            tail += encoder.finish()
        self._inner.end(tail)  # sent by flush, after the store (when the upstream ended without [DONE])

    async def flush_head(self) -> None:
        await self._inner.flush_head()


class ResponsesApi:
    def __init__(self, openai: OpenAIApi, store: ResponseStore, identify: Identify | None,
                 reject_builtin_tools: bool, retention_s: float, default_max_output_tokens: int | None = None) -> None:
        self.openai = openai
        self.default_max_output_tokens = default_max_output_tokens
        self.store = store
        self.identify = identify
        self.reject_builtin_tools = reject_builtin_tools
        self.retention_s = retention_s
        self._purge: asyncio.Task[None] | None = None

    async def _owner(self, request: Request) -> str:
        return owner_of(await self.identify(request.headers)) if self.identify is not None else ""

    @staticmethod
    def _reject(request: Request, responder: Responder, err: GatewayError) -> None:
        responder.send_error(err, [("x-request-id", request_id_of(request))])

    async def create(self, request: Request, responder: Responder) -> None:
        try:
            req = parse_body(request)
            owner = await self._owner(request)  # 401 before anything is looked up
            if req.get("background") not in (None, False):
                # The provider would answer `queued` and bill the generation later, out of the gateway's sight
                # (no usage, no budget): not served, whichever the deployment.
                raise BadRequest("background responses are not supported by this gateway: send the request "
                                 "without `background` (stream it for long generations)", param="background",
                                 code="unsupported_parameter")
            previous = req.get("previous_response_id")
            history: list[dict[str, Any]] = []
            if previous is not None:
                if not isinstance(previous, str):
                    raise BadRequest("previous_response_id must be a string", param="previous_response_id")
                chain = await asyncio.to_thread(self.store.chain, previous, owner)
                if chain is None:
                    raise NotFound(f"Previous response with id '{previous}' not found.",
                                   param="previous_response_id", code="previous_response_not_found")
                history = conversation(chain)
            try:
                own = input_items(req.get("input"))
                body, dropped, names = to_chat_request(req, history + own)
            except UNTRANSLATABLE as exc:  # an input text that is a number, …
                raise untranslatable("Responses") from exc
            if self.default_max_output_tokens is not None and "max_tokens" not in body:
                body["max_tokens"] = self.default_max_output_tokens
            if dropped and self.reject_builtin_tools and self._translated(body["model"]):
                raise BadRequest(f"built-in tools are not available for this gateway's models: "
                                 f"{', '.join(dropped)}", param="tools", code="unsupported_tool")
        except GatewayError as err:
            self._reject(request, responder, err)
            return
        native = request.body
        if history:
            rest = {k: v for k, v in req.items() if k != "previous_response_id"}
            native = orjson.dumps({**rest, "input": history_for_native(history) + own})
        headers = dict(request.headers)
        headers["content-type"] = "application/json"
        inner = Request("POST", request.path, request.query, headers, orjson.dumps(body), request.client)
        rid = new_id("resp")
        echo = echo_of(req, dropped)
        save = None
        if req.get("store") is not False:
            async def save(final: dict[str, Any]) -> None:
                await asyncio.to_thread(self.store.put, owner, own, final)
        writer = ResponsesWriter(responder, rid, body["model"], echo, names, save, dropped)
        native_body = NativeBody(RESPONSES_WIRE, native, writer.relay_as_is)
        proxied = asyncio.ensure_future(self.openai.proxy(inner, writer, CHAT, native_body))
        try:
            await asyncio.shield(proxied)
        except asyncio.CancelledError:
            # The client hung up. After the stream's last event that is how agents end a turn: the upstream's
            # last bytes are still read, so that the turn is settled as answered, with the provider's usage.
            if not writer.done:
                proxied.cancel()
            await asyncio.gather(proxied, return_exceptions=True)
            raise
        await writer.flush()

    def _translated(self, model: str) -> bool:
        """Whether a deployment of the model (or of its fallbacks) gets the request translated to chat."""
        catalog = self.openai.catalog
        route = catalog.resolve(model)
        if route is None:
            return False  # the pipeline answers 404
        routes = [route, *route.chain, *filter(None, (catalog.resolve(name) for name in route.fallbacks))]
        return any(dep.provider.native_wire != RESPONSES_WIRE for r in routes for dep in r.deployments)

    async def retrieve(self, request: Request, responder: Responder) -> None:
        owner = await self._owner(request)
        stored = await asyncio.to_thread(self.store.get, request.params["response_id"], owner)
        if stored is None:
            raise self._missing(request)
        responder.send(200, orjson.dumps(stored.response), [("x-request-id", request_id_of(request))])

    async def delete(self, request: Request, responder: Responder) -> None:
        owner = await self._owner(request)
        rid = request.params["response_id"]
        if not await asyncio.to_thread(self.store.delete, rid, owner):
            raise self._missing(request)
        responder.send(200, orjson.dumps({"id": rid, "object": "response.deleted", "deleted": True}),
                       [("x-request-id", request_id_of(request))])

    async def input_items(self, request: Request, responder: Responder) -> None:
        """The items the response was generated from (the chain's turns included), newest first by default."""
        owner = await self._owner(request)
        rid = request.params["response_id"]
        query = _query(request.query)
        chain = await asyncio.to_thread(self.store.chain, rid, owner)
        if chain is None or chain[-1].id != rid:
            raise self._missing(request)
        items = conversation(chain[:-1]) + chain[-1].input
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise BadRequest("order must be asc or desc", param="order")
        if order == "desc":
            items.reverse()
        after = query.get("after")
        if after:
            at = next((i for i, item in enumerate(items) if item.get("id") == after), None)
            items = items[at + 1:] if at is not None else []
        limit = _limit(query.get("limit"))
        page = items[:limit]
        body = {"object": "list", "data": page, "first_id": page[0].get("id") if page else None,
                "last_id": page[-1].get("id") if page else None, "has_more": len(items) > limit}
        responder.send(200, orjson.dumps(body), [("x-request-id", request_id_of(request))])

    @staticmethod
    def _missing(request: Request) -> NotFound:
        return NotFound(f"Response with id '{request.params['response_id']}' not found.", param="response_id")

    # -- retention
    async def start(self) -> None:
        if self.retention_s > 0:
            self._purge = asyncio.create_task(self._purge_loop(), name="responses-retention")

    async def stop(self) -> None:
        if self._purge is not None:
            self._purge.cancel()
            await asyncio.gather(self._purge, return_exceptions=True)

    async def _purge_loop(self) -> None:
        while True:
            try:
                gone = await asyncio.to_thread(self.store.purge, self.retention_s)
                if gone:
                    log.info("retention: %d stored responses deleted", gone)
            except Exception:
                log.exception("retention: stored responses could not be purged")
            await asyncio.sleep(PURGE_EVERY_S)


def _query(query: str) -> dict[str, str]:
    return dict(parse_qsl(query)) if query else {}


def _limit(value: str | None) -> int:
    if value is None:
        return 20
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 100:
        raise BadRequest("limit must be an integer from 1 to 100", param="limit")
    return int(value)
