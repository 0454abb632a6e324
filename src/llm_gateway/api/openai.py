"""The OpenAI-compatible HTTP edge: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /v1/*."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson

from llm_gateway.accounting.usage import cut_short
from llm_gateway.api.passthrough_body import named_models
from llm_gateway.api.passthrough_path import passthrough_endpoint
from llm_gateway.cache.replay import replay
from llm_gateway.errors import BadRequest, GatewayError, NotFound
from llm_gateway.pipeline.context import GATEWAY_ERROR, RequestContext
from llm_gateway.pipeline.dispatch import Dispatcher
from llm_gateway.pipeline.stack import Pipeline
from llm_gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, NATIVE_BODY, NativeBody
from llm_gateway.providers.sse import frame
from llm_gateway.routing.access import Access
from llm_gateway.routing.catalog import Catalog
from llm_gateway.routing.options import parse_options
from llm_gateway.server.http import Request, Responder

JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")
ENDPOINTS = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/embeddings": EMBEDDINGS}


class _RequestIds:
    """32 hex digits like a uuid4's, but a random per-process prefix and a counter: no system call per request
    (uuid4 reads the kernel's random source each time). Ids need to be unique, not secret; a forked worker
    draws its own prefix."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(10)
        self._counter = itertools.count(secrets.randbelow(1 << 24))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


new_request_id = _RequestIds()


def request_id_of(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return new_request_id()


def _only_model(names: set[str]) -> str | None:
    """The one model a pass-through body names; 400 when it names several (which one would the upstream take?)."""
    if len(names) > 1:
        shown = ", ".join(repr(name[:64]) for name in sorted(names)[:3])
        raise BadRequest(f"the request names {len(names)} different models ({shown}): name one",
                         param="model", code="ambiguous_model")
    return next(iter(names), None)


# orjson reads JSON nested up to 1,024 levels and writes it up to 254: a body the gateway writes again (an
# ingress's translation, a guardrail's rewrite, a stored response's echo) failed as a 500, or as a 502 once the
# upstream had answered. It is refused as it is read.
MAX_WRITTEN_DEPTH = 254


def parse_body(request: Request, any_type: bool = False) -> dict[str, Any]:
    """The JSON object of a request, or a 4xx naming what is wrong with it. `any_type`: whatever the content type
    says (genai-gateway read every body as JSON; so does keyless mode)."""
    ctype = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if ctype not in JSON_TYPES and not any_type:
        raise GatewayError(f"unsupported content type {ctype!r}: send the request body as application/json",
                           status=415, type="invalid_request_error", code="unsupported_media_type")
    if not request.body:
        raise BadRequest("the request body is empty: send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":  # looked at only here: a plain JSON body is read whatever the header says
            raise GatewayError(f"request bodies compressed with content-encoding {encoding[:40]!r} are not accepted: "
                               "send the JSON uncompressed", status=415, type="invalid_request_error",
                               code="unsupported_media_type") from None
        raise BadRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    raw = request.body
    # Fewer bytes, or fewer brackets, cannot nest that deep: the usual body is not written again here.
    if len(raw) > 2 * MAX_WRITTEN_DEPTH and raw.count(b"{") + raw.count(b"[") > MAX_WRITTEN_DEPTH:
        try:  # ~1/7 of what reading it cost
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise BadRequest(f"the request body is nested too deeply: at most {MAX_WRITTEN_DEPTH} levels of arrays "
                             "and objects", code="invalid_json") from None
    return body


class OpenAIApi:
    def __init__(self, catalog: Catalog, pipeline: Pipeline, dispatcher: Dispatcher, user_header: str,
                 forward_client_auth: bool) -> None:
        self.catalog = catalog
        self.pipeline = pipeline
        self.dispatcher = dispatcher
        self.user_header = user_header.lower()
        self.forward_client_auth = forward_client_auth
        self.in_flight = 0  # read by the llm_gateway_in_flight_requests gauge at scrape time
        # What the caller's key may reach, where no pipeline runs (the model list, token counting): None for
        # everything; 401 for a bad key. Set by create_app (keys.auth.AuthStage.access_of).
        self.access_of: Callable[[dict[str, str]], Awaitable[Access | None]] | None = None

    # -- entry points
    async def endpoint(self, request: Request, responder: Responder) -> None:
        await self.proxy(request, responder, ENDPOINTS[request.path.rstrip("/")])

    async def model_list(self, request: Request) -> list[tuple[str, str]] | None:
        """(name, owner) of the models the caller may use; None when the pass-through upstream's list is theirs."""
        # The caller's key first: no answer, not even the pass-through upstream's list, without a valid one.
        access = await self.access_of(request.headers) if self.access_of is not None else None
        passthrough = self.catalog.passthrough
        listed = self.catalog.listed()
        if passthrough is not None and not listed:
            if access is None or access.names is None or "*" in access.names:
                return None
            listed = [(name, passthrough.name) for name in sorted(access.names)]  # the key's own list
        if access is not None:
            listed = access.listed(listed)
        return listed

    async def models(self, request: Request, responder: Responder) -> None:
        listed = await self.model_list(request)
        if listed is None:
            await self.proxy(request, responder, "models")
            return
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": owner} for name, owner in listed]
        responder.send(200, orjson.dumps({"object": "list", "data": data}),
                       [("x-request-id", request_id_of(request))])

    async def other(self, request: Request, responder: Responder) -> None:
        """Any other /v1/* path goes as it is to the single pass-through upstream, when there is one (the key
        must allow pass-through: the auth stage decides)."""
        if self.catalog.passthrough is None:
            if self.access_of is not None:  # no key, no answer: not even which paths exist
                await self.access_of(request.headers)
            raise NotFound(f"unknown path {request.path}: this gateway serves /v1/chat/completions, "
                           "/v1/completions, /v1/embeddings and /v1/models", code="unknown_url")
        await self.proxy(request, responder, passthrough_endpoint(request.path))

    # -- the request path
    async def proxy(self, request: Request, responder: Responder, endpoint: str,
                    native: NativeBody | None = None) -> None:
        ctx = RequestContext(request, request_id_of(request), endpoint)
        if native is not None:  # the client's own wire format, for a deployment that speaks it too
            ctx.extensions[NATIVE_BODY] = native
        self.in_flight += 1
        try:
            self._read(ctx)
            await self.pipeline.admit(ctx)
            if ctx.cache is not None and ctx.cache.answer is not None:  # the cache stage found the answer
                ctx.run_deferred()  # what the stages left for while an upstream works: none will
                answer = ctx.cache.answer
                if ctx.guard is not None:  # the asker's guardrails, whoever stored the answer
                    answer = await ctx.guard.cached(answer)
                await replay(ctx, responder, answer, self._headers(ctx))
            else:
                await self._forward(ctx, responder)
        except GatewayError as err:
            ctx.status = err.status
            ctx.error_type = err.type
            ctx.extensions[GATEWAY_ERROR] = err
            if ctx.deferred:  # e.g. limit headers, when the request failed before it went upstream
                ctx.run_deferred()
            if responder.started:
                await self._end_stream_with_error(responder, err)
            else:
                responder.send_error(err, self._headers(ctx))
        except asyncio.CancelledError:
            ctx.disconnected = True
            ctx.status = 499  # client closed the request
            raise
        finally:
            ctx.finished_at = time.perf_counter()
            self.in_flight -= 1
            if ctx.deferred:
                ctx.run_deferred()
            self.pipeline.settle(ctx)

    def _read(self, ctx: RequestContext) -> None:
        request = ctx.request
        canonical = ctx.endpoint in ENDPOINTS.values()
        json_body = canonical or (request.method == "POST" and request.body and
                                  "json" in request.headers.get("content-type", "").lower())
        if json_body:
            ctx.body = parse_body(request, self.forward_client_auth)
        body = ctx.body
        ctx.options = parse_options(request.headers, body)  # the `x-gateway` extension, never forwarded
        model = body.get("model")
        if canonical and model is None:
            raise BadRequest("you must provide a model parameter", param="model", code="missing_model")
        if model is not None and not isinstance(model, str):
            raise BadRequest("model must be a string", param="model", code="invalid_model")
        if not json_body and request.body:  # a pass-through body of another kind names its model too
            model = _only_model(named_models(request.headers.get("content-type", ""), request.body))
        ctx.model = model or ""
        user = request.headers.get(self.user_header) or body.get("user")
        # The user the client names; with keys in use the auth stage makes the key's user the request's user.
        ctx.user = ctx.end_user = user if isinstance(user, str) else ""
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest("stream must be a boolean", param="stream")
        ctx.stream = stream and ctx.endpoint != EMBEDDINGS
        options = body.get("stream_options")
        ctx.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        # An unknown model is refused by the routing stage, after authentication: someone without a key
        # must not learn which model names exist.
        ctx.route = self.catalog.resolve(ctx.model) if canonical else self.catalog.passthrough_route(ctx.model)

    def _headers(self, ctx: RequestContext) -> list[tuple[str, str]]:
        headers = [("x-request-id", ctx.request_id)]
        headers.extend(ctx.response_headers)
        return headers

    async def _forward(self, ctx: RequestContext, responder: Responder) -> None:
        auth = ctx.request.headers.get("authorization") if self.forward_client_auth else None
        if ctx.stream:  # the stream's head is rendered while the upstream works (usually it is the one sent)
            ctx.defer(partial(self._prepare_head, ctx, responder))
        guard = ctx.guard  # guardrails.flow.RequestGuard, when the policy gives this request any
        if guard is not None and guard.parallel:  # checks beside the call: a block cancels it
            call, response = await guard.during(self.dispatcher.send(ctx, auth))
        else:
            call, response = await self.dispatcher.send(ctx, auth)
        provider = ctx.deployment.provider
        if call.native_body is not None:  # the answer is in the client's format already: relayed as it is
            ctx.extensions[NATIVE_BODY].relay_as_is()
            if ctx.cache is not None:  # the cache keeps canonical answers only
                ctx.cache.capture = None
        headers = self._headers(ctx)
        if call.endpoint not in ENDPOINTS.values():
            await self._relay_raw(ctx, responder, response, headers)
            return
        if not ctx.stream:
            body = await response.read()
            parsed = provider.parse(call, body)
            answer = parsed.body if guard is None else await guard.answer(parsed.body)
            ctx.output = answer if call.native_body is None else None
            ctx.usage = parsed.usage
            ctx.completion_parts = parsed.completion_texts
            ctx.first_byte_at = time.perf_counter()
            ctx.status = 200
            responder.send(200, answer, headers)  # its bookkeeping: deferred, run before settle
            await responder.flush()  # the answer leaves before the request is settled
            return
        decoder = provider.stream_decoder(call)
        ctx.output = decoder
        capture = ctx.cache.capture if ctx.cache is not None else None  # assembles the answer to cache it
        shield = guard.stream() if guard is not None else None  # holds back what must not reach the client yet
        if shield is None:
            responder.start(200, headers)
            ctx.status = 200
        ended = False
        try:
            async for chunk in response.chunks():
                out = decoder.feed(chunk)
                if shield is not None:
                    out = await self._shielded(ctx, responder, headers, shield, out)
                if out:
                    if not ctx.first_byte_at:
                        ctx.first_byte_at = time.perf_counter()
                    await responder.write(out)
                    if ctx.deferred:  # the answer's bookkeeping, left until its first bytes went on
                        ctx.run_deferred()
                    if capture is not None:
                        capture.feed(out)
            out = decoder.finish()
            if shield is not None:
                out = await self._shielded(ctx, responder, headers, shield, out, True)
            if out:
                await responder.write(out)
                if capture is not None:
                    capture.feed(out)
            responder.end()
            ended = True
        finally:
            if ended:
                ctx.usage = decoder.usage
                if decoder.usage is None:
                    ctx.completion_parts = decoder.completion_texts()
            else:  # cut short: the provider's usage so far is not the answer's; count what was relayed
                cut_short(ctx, decoder.usage, decoder.completion_texts())

    @staticmethod
    async def _shielded(ctx: RequestContext, responder: Responder, headers: list[tuple[str, str]], shield: Any,
                        out: bytes, last: bool = False) -> bytes:
        """A guarded stream's events after its guardrails; the answer starts with its first byte that passed
        (a block before then is a plain 400)."""
        out = await shield.feed(out)
        if last and shield.blocked is None:
            out += await shield.finish()
        if (out or (last and shield.blocked is None)) and not responder.started:  # a block before: a plain 400
            responder.start(200, headers)
            ctx.status = 200
        if shield.blocked is not None:
            if out:
                await responder.write(out)
            raise shield.blocked
        return out

    def _prepare_head(self, ctx: RequestContext, responder: Responder) -> None:
        if ctx.endpoint in ENDPOINTS.values():
            responder.prepare(200, self._headers(ctx))

    async def _relay_raw(self, ctx: RequestContext, responder: Responder, response: Any,
                         headers: list[tuple[str, str]]) -> None:
        ctype = (response.header(b"content-type") or "application/octet-stream").encode("latin-1")
        ctx.status = response.status
        if response.header(b"content-length") is not None:
            body = await response.read()
            ctx.first_byte_at = time.perf_counter()
            responder.send(response.status, body, headers, content_type=ctype)
            return
        responder.start(response.status, headers, content_type=ctype)
        async for chunk in response.chunks():
            if not ctx.first_byte_at:
                ctx.first_byte_at = time.perf_counter()
            await responder.write(chunk)
        responder.end()

    async def _end_stream_with_error(self, responder: Responder, err: GatewayError) -> None:
        """Bytes already reached the client: end the stream with an error event rather than silence."""
        try:
            await responder.write(frame({"error": {"message": err.message, "type": err.type,
                                                   "code": err.code, "param": None}}))
            responder.end()
        except (ConnectionError, RuntimeError):
            pass
        responder.keep_alive = False
