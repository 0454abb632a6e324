"""Other gateways' and SDKs' paths, served by the /v1/ handlers: Azure OpenAI's
`/openai/deployments/{deployment}/{endpoint}` and `/openai/v1/{endpoint}`, LLMGateway's `/<model>/v1/{endpoint}`
(opt-in: `server.model_path_routes`), its `/extras/tokenize/count`, LiteLLM's `/chat/completions` (no `/v1`), and
`GET /v1/models/{id}`.

The edge asks `hot()` only about paths outside `/v1/`, so the /v1/* requests pay nothing for these."""

from __future__ import annotations

import time

import orjson

from llm_gateway.accounting.tokens import TokenCounter
from llm_gateway.api.openai import OpenAIApi, parse_body, request_id_of
from llm_gateway.errors import BadRequest, NotFound
from llm_gateway.server.http import Request, Responder

_AZURE_ENDPOINTS = frozenset({"chat/completions", "completions", "embeddings"})
# LiteLLM serves the OpenAI paths without `/v1` too: its clients' base URL may be the bare host
_BARE = frozenset({"/chat/completions", "/completions", "/embeddings", "/models"})
# first segments of the cold paths (`/api/v1/usage` is the admin API, not a model called `api`)
_NOT_MODELS = frozenset({"api", "ui", "docs", "openapi.json", "health", "ready", "metrics"})
_AZURE_DEPLOYMENTS = "/openai/deployments/"


def _with_model(request: Request, model: str) -> None:
    """The request's JSON body with `model` set (the path names it); any other body is left to be refused."""
    if not request.body:
        if request.method == "POST":
            request.body = orjson.dumps({"model": model})
        return
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return
    if isinstance(body, dict):
        body["model"] = model
        request.body = orjson.dumps(body)


class CompatPaths:
    def __init__(self, openai: OpenAIApi, counter: TokenCounter, model_path_routes: bool) -> None:
        self.openai = openai
        self.counter = counter
        self.model_path_routes = model_path_routes

    def hot(self, request: Request) -> bool:
        """Whether a path outside /v1/ is one of these; rewritten to the /v1/ path that serves it."""
        path = request.path
        if path.startswith("/openai/"):
            return self._azure(request)
        if path.startswith("/extras/"):
            return True
        if path in _BARE:
            request.path = "/v1" + path
            return True
        if self.model_path_routes:
            model, sep, rest = path[1:].partition("/")
            if sep and model and model not in _NOT_MODELS and (rest.startswith("v1/") or rest.startswith("extras/")):
                request.path = "/" + rest
                if rest.startswith("extras/") or request.method == "POST":
                    _with_model(request, model)
                return True
        return False

    def _azure(self, request: Request) -> bool:
        path = request.path
        if path.startswith("/openai/v1/"):
            request.path = path[len("/openai"):]
        elif path.startswith(_AZURE_DEPLOYMENTS):
            deployment, _, endpoint = path[len(_AZURE_DEPLOYMENTS):].partition("/")
            if not deployment or endpoint.rstrip("/") not in _AZURE_ENDPOINTS:
                return False
            request.path = "/v1/" + endpoint
            _with_model(request, deployment)
        else:
            return False
        headers = request.headers
        key = headers.get("api-key")
        if key is not None and "authorization" not in headers:  # Azure's key header authenticates as ours does
            headers["authorization"] = f"Bearer {key}"
        return True

    async def model(self, request: Request, responder: Responder) -> None:
        """GET /v1/models/{id}: the model object, or OpenAI's 404."""
        if request.method != "GET":  # e.g. DELETE of a fine-tuned model: the pass-through upstream's, if any
            await self.openai.other(request, responder)
            return
        listed = await self.openai.model_list(request)
        if listed is None:  # the pass-through upstream's list: it answers for its models too
            await self.openai.other(request, responder)
            return
        wanted = request.path[len("/v1/models/"):]
        for name, owner in listed:
            if name == wanted:
                body = {"id": name, "object": "model", "created": int(time.time()), "owned_by": owner}
                responder.send(200, orjson.dumps(body), [("x-request-id", request_id_of(request))])
                return
        raise NotFound(f"The model '{wanted}' does not exist", param="model", code="model_not_found")

    async def tokenize_count(self, request: Request, responder: Responder) -> None:
        """POST /extras/tokenize/count: `{"count": N}` of an input string or a whole request, counted as the
        limits count a prompt."""
        access = await self.openai.access_of(request.headers) if self.openai.access_of is not None else None
        body = parse_body(request, self.openai.forward_client_auth)
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise BadRequest("model must be a string", param="model")
        if not any(k in body for k in ("messages", "input", "prompt")):
            raise BadRequest("send the text as `input` (or a chat request's `messages`)", param="input")
        route = self.openai.catalog.resolve(model) if model else None
        if model and access is not None:  # the same decision as a request for the model would get
            route = access.counted(model, route)
        upstream = route.deployments[0].model if route is not None and route.deployments else model or ""
        count = self.counter.count_prompt(body, upstream)
        responder.send(200, orjson.dumps({"count": count}), [("x-request-id", request_id_of(request))])
