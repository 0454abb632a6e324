"""The `anthropic` provider type: requests, responses, streams and errors of the Messages API."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import GatewayError, NotFound, UpstreamUnavailable
from llm_gateway.providers.anthropic.native import NativeMessagesDecoder
from llm_gateway.providers.anthropic.request import SUPPORTED, to_messages_request
from llm_gateway.providers.anthropic.response import ERROR_KINDS, MessagesStreamDecoder, to_chat_completion
from llm_gateway.providers.base import CHAT, ParsedResponse, PreparedRequest, Provider, StreamDecoder, UpstreamCall
from llm_gateway.providers.error_map import kind_of_status, mapped_error
from llm_gateway.providers.model_swap import with_model
from llm_gateway.providers.params import ParamPolicy
from llm_gateway.settings import ProviderConfig

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
FORWARDED_HEADERS = ("anthropic-beta",)


class AnthropicProvider(Provider):
    type = "anthropic"
    price_catalog = "anthropic"
    native_wire = "anthropic"  # /v1/messages requests go through as they are (see NativeBody)

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        options = config.options
        self.policy = ParamPolicy(SUPPORTED, options)
        self.default_max_tokens = int(options.get("default_max_tokens", DEFAULT_MAX_TOKENS))
        headers = [("content-type", "application/json"), ("anthropic-version",
                                                          str(options.get("api_version", API_VERSION)))]
        if config.api_key:
            headers.append(("x-api-key", config.api_key))
        headers.extend((k.lower(), v) for k, v in config.headers.items())
        self._headers = headers

    def default_base_url(self) -> str:
        return "https://api.anthropic.com"

    def prepare(self, call: UpstreamCall) -> PreparedRequest:
        if call.endpoint != CHAT:
            raise NotFound(f"provider {self.name!r} serves chat completions only, not /v1/{call.endpoint}",
                           code="unsupported_endpoint")
        dropped: tuple[str, ...] = ()
        if call.native_body is not None:
            data = with_model(call.native_body, call.model)
        else:
            dropped = self.policy.check(call.body, self.name)
            body, conflicts = to_messages_request(call.body, call.model, self.default_max_tokens)
            dropped = tuple(sorted({*dropped, *conflicts}))
            data = orjson.dumps(body)
        headers = list(self._headers)
        for name in FORWARDED_HEADERS:
            if name in call.client_headers:
                headers.append((name, call.client_headers[name]))
        if call.stream:
            headers.append(("accept", "text/event-stream"))
        return PreparedRequest("POST", f"{self.base_path}/v1/messages", headers, data, dropped)

    def parse(self, call: UpstreamCall, body: bytes) -> ParsedResponse:
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable("the upstream answered with invalid JSON") from None
        out, usage, texts = to_chat_completion(msg, call.model)
        if call.native_body is not None:  # the client reads Messages too: its answer goes back as it came
            return ParsedResponse(body, usage, texts)
        return ParsedResponse(orjson.dumps(out), usage, texts)

    def stream_decoder(self, call: UpstreamCall) -> StreamDecoder:
        if call.native_body is not None:
            return NativeMessagesDecoder()
        return MessagesStreamDecoder(call.model, call.client_wants_usage)

    def error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        etype, message = "", ""
        try:
            obj: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            etype = str(obj["error"].get("type") or "")
            message = str(obj["error"].get("message") or "")
        elif body:
            message = body.decode("utf-8", "replace")[:500]
        kind = ERROR_KINDS.get(etype) or kind_of_status(status, message)
        if kind == "invalid" and kind_of_status(status, message) == "context_length":
            kind = "context_length"
        return mapped_error(kind, message or f"HTTP {status}", self.name, headers, status)
