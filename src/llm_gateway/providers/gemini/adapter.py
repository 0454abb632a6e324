"""The `gemini` provider type: the Gemini API with an API key (`x-goog-api-key`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from llm_gateway.errors import GatewayError, NotFound, UpstreamUnavailable
from llm_gateway.providers import embeddings
from llm_gateway.providers.base import (
    CHAT,
    EMBEDDINGS,
    ParsedResponse,
    PreparedRequest,
    Provider,
    StreamDecoder,
    UpstreamCall,
)
from llm_gateway.providers.error_map import kind_of_status, mapped_error
from llm_gateway.providers.gemini.request import SUPPORTED, to_embed_request, to_generate_request
from llm_gateway.providers.gemini.response import GenerateStreamDecoder, to_chat_completion
from llm_gateway.providers.params import ParamPolicy
from llm_gateway.settings import ProviderConfig

API_VERSION = "v1beta"
# google.rpc status -> gateway error kind (see providers/error_map.py)
ERROR_KINDS = {"INVALID_ARGUMENT": "invalid", "FAILED_PRECONDITION": "invalid", "OUT_OF_RANGE": "invalid",
               "UNAUTHENTICATED": "auth", "PERMISSION_DENIED": "permission", "NOT_FOUND": "not_found",
               "RESOURCE_EXHAUSTED": "rate_limit", "INTERNAL": "server", "UNAVAILABLE": "overloaded",
               "DEADLINE_EXCEEDED": "timeout"}


class GeminiProvider(Provider):
    type = "gemini"
    price_catalog = "google"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.policy = ParamPolicy(SUPPORTED, config.options)
        self.embed_policy = ParamPolicy(embeddings.SUPPORTED, config.options)
        self.api_version = str(config.options.get("api_version", API_VERSION))
        headers = [("content-type", "application/json")]
        if config.api_key:
            headers.append(("x-goog-api-key", config.api_key))
        headers.extend((k.lower(), v) for k, v in config.headers.items())
        self._headers = headers

    def default_base_url(self) -> str:
        return "https://generativelanguage.googleapis.com"

    def _target(self, model: str, method: str) -> str:
        # The model name may be the client's (`gemini/<any name>`): it stays one path segment, whatever it holds.
        return f"{self.base_path}/{self.api_version}/models/{quote(model, safe='')}:{method}"

    def prepare(self, call: UpstreamCall) -> PreparedRequest:
        if call.endpoint == EMBEDDINGS:
            dropped = self.embed_policy.check(call.body, self.name)
            body = to_embed_request(embeddings.inputs_of(call.body), call.model, call.body.get("dimensions"))
            return PreparedRequest("POST", self._target(call.model, "batchEmbedContents"), list(self._headers),
                                   orjson.dumps(body), dropped)
        if call.endpoint != CHAT:
            raise NotFound(f"provider {self.name!r} serves chat completions and embeddings only",
                           code="unsupported_endpoint")
        dropped = self.policy.check(call.body, self.name)
        body = to_generate_request(call.body)
        if call.stream:
            target = self._target(call.model, "streamGenerateContent") + "?alt=sse"
            headers = [*self._headers, ("accept", "text/event-stream")]
        else:
            target, headers = self._target(call.model, "generateContent"), list(self._headers)
        return PreparedRequest("POST", target, headers, orjson.dumps(body), dropped)

    def parse(self, call: UpstreamCall, body: bytes) -> ParsedResponse:
        try:
            obj: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable("the upstream answered with invalid JSON") from None
        if call.endpoint == EMBEDDINGS:
            vectors = [e.get("values") or [] for e in obj.get("embeddings") or ()]
            out = embeddings.embeddings_response(vectors, call.model, call.body, None)
            return ParsedResponse(orjson.dumps(out), None)
        result, usage, texts = to_chat_completion(obj, call.model)
        return ParsedResponse(orjson.dumps(result), usage, texts)

    def stream_decoder(self, call: UpstreamCall) -> StreamDecoder:
        return GenerateStreamDecoder(call.model, call.client_wants_usage)

    def error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        try:
            obj: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, list) and obj:  # streamGenerateContent without alt=sse answers errors in an array
            obj = obj[0]
        err = obj.get("error") if isinstance(obj, dict) else None
        message = str(err.get("message", "")) if isinstance(err, dict) else body.decode("utf-8", "replace")[:500]
        kind = ERROR_KINDS.get(str(err.get("status", ""))) if isinstance(err, dict) else None
        if "api key not valid" in message.lower():
            kind = "auth"
        elif kind in (None, "invalid"):
            kind = kind_of_status(status, message) if kind is None or status == 400 else kind
        return mapped_error(kind, message or f"HTTP {status}", self.name, headers)
