"""The `vertex` provider type: Vertex AI with Google credentials (Application Default Credentials).

- Gemini models: `generateContent` / `streamGenerateContent?alt=sse`, the Gemini translation as it is;
- Anthropic models (names starting with `claude`): `rawPredict` / `streamRawPredict`, the Messages body without
  `model` and with `anthropic_version: vertex-2023-10-16`, the Anthropic translation as it is;
- embeddings: `predict` with one instance per input.

`options`: `project` (required), `location` (default `us-central1`; `global` uses the global endpoint; also
`vertex_project` / `vertex_location`),
`credentials_file` (a service-account or external-account JSON; default: Application Default Credentials).
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import quote

import orjson

from llm_gateway.accounting.usage_types import MAX_COUNT, Usage
from llm_gateway.errors import GatewayError, NotFound, UpstreamUnavailable
from llm_gateway.providers import embeddings
from llm_gateway.providers.anthropic.adapter import AnthropicProvider
from llm_gateway.providers.anthropic.request import to_messages_request
from llm_gateway.providers.base import (
    CHAT,
    EMBEDDINGS,
    ParsedResponse,
    PreparedRequest,
    Provider,
    StreamDecoder,
    UpstreamCall,
)
from llm_gateway.providers.credentials import Refresher
from llm_gateway.providers.gemini.adapter import GeminiProvider
from llm_gateway.providers.gemini.request import to_generate_request
from llm_gateway.providers.params import ParamPolicy
from llm_gateway.settings import ProviderConfig

ANTHROPIC_VERSION = "vertex-2023-10-16"
DEFAULT_LOCATION = "us-central1"


class VertexProvider(Provider):
    type = "vertex"
    price_catalog = "google"  # genai-prices' Google catalog holds Vertex's Gemini and Claude prices

    def __init__(self, config: ProviderConfig) -> None:
        options = config.options
        # `vertex_project` / `vertex_location`: the names LiteLLM-style configs use
        self.project = str(options.get("project") or options.get("vertex_project") or "")
        self.location = str(options.get("location") or options.get("vertex_location") or DEFAULT_LOCATION)
        if not self.project:
            raise ValueError(f"providers.{config.name}: vertex needs options.project (the Google Cloud project id)")
        super().__init__(config)
        # The Gemini and Anthropic adapters translate; this one only says where requests go and signs them.
        inner = config.model_copy(update={"api_key": None, "base_url": "https://vertex.invalid", "headers": {}})
        self._gemini = GeminiProvider(inner)
        self._anthropic = AnthropicProvider(inner)
        self.embed_policy = ParamPolicy(embeddings.SUPPORTED, options)
        self._extra = [(k.lower(), v) for k, v in config.headers.items()]
        self._prefix = (f"{self.base_path}/v1/projects/{quote(self.project, safe='')}/locations/"
                        f"{quote(self.location, safe='')}/publishers")
        try:
            tokens = importlib.import_module("llm_gateway.providers.vertex.google_auth")
        except ModuleNotFoundError as exc:
            raise ValueError(f"providers.{config.name}: vertex needs google-auth ({exc.name} is missing): "
                             "pip install 'llm-gateway[cloud]'") from None
        fetch = tokens.GoogleTokens(options.get("credentials_file"))
        self.refresher: Refresher[str] = Refresher(self.name, "Google application default credentials", fetch)

    def default_base_url(self) -> str:
        if self.location == "global":
            return "https://aiplatform.googleapis.com"
        return f"https://{self.location}-aiplatform.googleapis.com"

    @staticmethod
    def is_anthropic(model: str) -> bool:
        return model.startswith("claude")

    def _target(self, publisher: str, model: str, method: str) -> str:
        return f"{self._prefix}/{publisher}/models/{quote(model, safe='')}:{method}"

    def prepare(self, call: UpstreamCall) -> PreparedRequest:
        authorization = self.refresher.current()
        headers = [("content-type", "application/json"), ("authorization", authorization), *self._extra]
        if call.endpoint == EMBEDDINGS:
            dropped = self.embed_policy.check(call.body, self.name)
            body: dict[str, Any] = {"instances": [{"content": text} for text in embeddings.inputs_of(call.body)]}
            if call.body.get("dimensions") is not None:
                body["parameters"] = {"outputDimensionality": call.body["dimensions"]}
            return PreparedRequest("POST", self._target("google", call.model, "predict"), headers,
                                   orjson.dumps(body), dropped)
        if call.endpoint != CHAT:
            raise NotFound(f"provider {self.name!r} serves chat completions and embeddings only",
                           code="unsupported_endpoint")
        if call.stream:
            headers.append(("accept", "text/event-stream"))
        if self.is_anthropic(call.model):
            dropped = self._anthropic.policy.check(call.body, self.name)
            body, conflicts = to_messages_request(call.body, call.model, self._anthropic.default_max_tokens)
            del body["model"]  # the model is in the path on Vertex
            body["anthropic_version"] = ANTHROPIC_VERSION
            target = self._target("anthropic", call.model, "streamRawPredict" if call.stream else "rawPredict")
            return PreparedRequest("POST", target, headers, orjson.dumps(body),
                                   tuple(sorted({*dropped, *conflicts})))
        dropped = self._gemini.policy.check(call.body, self.name)
        if call.stream:
            target = self._target("google", call.model, "streamGenerateContent") + "?alt=sse"
        else:
            target = self._target("google", call.model, "generateContent")
        return PreparedRequest("POST", target, headers, orjson.dumps(to_generate_request(call.body)), dropped)

    def parse(self, call: UpstreamCall, body: bytes) -> ParsedResponse:
        if call.endpoint == EMBEDDINGS:
            return self._parse_embeddings(call, body)
        if self.is_anthropic(call.model):
            return self._anthropic.parse(call, body)
        return self._gemini.parse(call, body)

    def _parse_embeddings(self, call: UpstreamCall, body: bytes) -> ParsedResponse:
        try:
            obj: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable("the upstream answered with invalid JSON") from None
        predictions = obj.get("predictions") if isinstance(obj, dict) else None
        if not isinstance(predictions, list):
            raise UpstreamUnavailable("the upstream answered without predictions")
        vectors, tokens = [], 0
        for item in predictions:
            found = item.get("embeddings") if isinstance(item, dict) else None
            found = found if isinstance(found, dict) else {}
            vectors.append(found.get("values") or [])
            count = (found.get("statistics") or {}).get("token_count")
            tokens += int(count) if isinstance(count, int | float) else 0
        usage = Usage(min(tokens, MAX_COUNT)) if tokens else None
        out = embeddings.embeddings_response(vectors, call.model, call.body, usage)
        return ParsedResponse(orjson.dumps(out), usage)

    def stream_decoder(self, call: UpstreamCall) -> StreamDecoder:
        if self.is_anthropic(call.model):
            return self._anthropic.stream_decoder(call)
        return self._gemini.stream_decoder(call)

    def error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        # Anthropic models answer their own error shape; Vertex itself (auth, quota, routing) answers Google's.
        if body.startswith(b"{") and b'"type"' in body and b'"error"' in body and b'"status"' not in body:
            return self._anthropic.error(status, body, headers)
        return self._gemini.error(status, body, headers)
