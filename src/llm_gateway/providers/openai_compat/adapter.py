"""OpenAI and OpenAI-compatible upstreams: bytes pass through, only `model` and `stream_options` change."""

from __future__ import annotations

import re
from typing import Any

import orjson

from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES_WIRE,
    ParsedResponse,
    PreparedRequest,
    Provider,
    StreamDecoder,
    UpstreamCall,
)
from llm_gateway.providers.model_swap import with_model
from llm_gateway.providers.openai_compat.responses_native import NativeResponsesDecoder, usage_of_body
from llm_gateway.providers.sse import EventTranslator

# Client headers that carry meaning for an OpenAI-compatible upstream and are forwarded as they are.
FORWARDED_HEADERS = ("openai-beta",)
# The organization and project the upstream key acts for (whose billing, whose stored files and responses): the
# client's choice only when its own credentials go upstream (keyless mode), never a virtual key holder's.
ACCOUNT_HEADERS = ("openai-organization", "openai-project")
CANONICAL = (CHAT, COMPLETIONS, EMBEDDINGS)


_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,?')


def _without_null_usage(event: bytes) -> bytes:
    """OpenAI's compact `,"usage":null` by a plain replace (~0.1 us); other spacings by the regex (~4 us)."""
    out = event.replace(b',"usage":null', b"", 1)
    return out if len(out) != len(event) else _NULL_USAGE.sub(b"", event, count=1)


def completion_texts_of_chunk(chunk: Any, out: list[str]) -> None:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or choice.get("message") or {}
        text = choice.get("text")
        if isinstance(text, str):
            out.append(text)
        for key in ("content", "reasoning_content", "refusal"):
            value = delta.get(key)
            if isinstance(value, str):
                out.append(value)
        for call in delta.get("tool_calls") or ():
            fn = call.get("function") or {}
            for key in ("name", "arguments"):
                if isinstance(fn.get(key), str):
                    out.append(fn[key])


class PassthroughDecoder(EventTranslator, StreamDecoder):
    """Relays an OpenAI SSE stream event by event; notes usage, drops the usage chunk nobody asked for."""

    def __init__(self, strip_usage_chunk: bool) -> None:
        super().__init__()
        self._strip = strip_usage_chunk
        # Every payload, for local counting when the upstream reports no usage and for traces and body logs.
        # One growing buffer rather than an object per chunk: a thousand open streams stay compact.
        self._payloads = bytearray()
        self.usage: Usage | None = None

    def _event(self, event: bytes) -> bytes:
        if not event.startswith(b"data:"):
            return event + b"\n\n" if event.strip() else b""  # comments and named events pass as they are
        payload = event[6:] if event[5:6] == b" " else event[5:]
        if payload == b"[DONE]":
            return event + b"\n\n"
        self._payloads += payload
        self._payloads += b"\n\n"  # never inside an event's payload
        at = payload.find(b'"usage"')
        if at < 0:
            return event + b"\n\n"
        if payload[at + 7:at + 24].lstrip(b" :\t").startswith(b"null"):
            # `"usage": null` on every chunk answers the include_usage the gateway added: not the client's to see
            return (_without_null_usage(event) if self._strip else event) + b"\n\n"
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event + b"\n\n"
        if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
            self.usage = Usage.from_openai(chunk["usage"], chunk)
            if self._strip and not chunk.get("choices"):
                return b""
        return event + b"\n\n"

    def _close(self) -> bytes:
        return b""

    def payloads(self) -> list[bytes]:
        """The `data:` payloads of the stream so far, in order ([DONE] aside)."""
        return bytes(self._payloads).split(b"\n\n")[:-1]

    def completion_texts(self) -> list[str]:
        out: list[str] = []
        for payload in self.payloads():
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                completion_texts_of_chunk(chunk, out)
        return out


class OpenAICompatibleProvider(Provider):
    """`openai` and `openai-compatible` provider types."""

    type = "openai-compatible"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.passthrough = bool(config.options.get("passthrough", False))
        if config.type == "openai":
            self.price_catalog = "openai"
        static = [("content-type", "application/json"), ("user-agent", "llm-gateway")]
        static.extend((k.lower(), v) for k, v in config.headers.items())
        self._static_headers = static
        self._auth = f"Bearer {config.api_key}" if config.api_key else None
        # /v1/responses requests go through as they are to an upstream that has the Responses API: OpenAI's,
        # Azure's, a single pass-through upstream (as before /v1/responses was served), or one that says so
        native = config.options.get("responses_api", config.type in ("openai", "azure") or self.passthrough)
        if not isinstance(native, bool):
            raise ValueError(f"providers.{config.name}.options.responses_api must be true or false")
        self.native_wire = RESPONSES_WIRE if native else ""

    def default_base_url(self) -> str:
        if self.config.type == "openai":
            return "https://api.openai.com/v1"
        return super().default_base_url()

    def _headers(self, call: UpstreamCall, content_type: str | None = None) -> list[tuple[str, str]]:
        headers = list(self._static_headers)
        if content_type is not None:
            headers[0] = ("content-type", content_type)
        auth = self._auth or call.client_auth
        if auth:
            headers.append(("authorization", auth))
        for name in FORWARDED_HEADERS if call.client_auth is None else FORWARDED_HEADERS + ACCOUNT_HEADERS:
            value = call.client_headers.get(name)
            if value is not None:
                headers.append((name, value))
        if call.stream:
            headers.append(("accept", "text/event-stream"))
        return headers

    def prepare(self, call: UpstreamCall) -> PreparedRequest:
        if call.native_body is not None:
            return PreparedRequest("POST", self.responses_path(), self._headers(call),
                                   with_model(call.native_body, call.model))
        target = f"{self.base_path}/{call.endpoint}" + (f"?{call.query}" if call.query else "")
        if call.endpoint not in CANONICAL:
            content_type = call.client_headers.get("content-type")
            raw = call.raw_body or b""
            headers = self._headers(call, content_type)
            if not raw and call.method in ("GET", "HEAD", "DELETE"):
                headers = [h for h in headers if h[0] != "content-type"]
            # A HEAD answer announces a length it never sends, and the upstream client reads a body by its
            # length: ask with GET, whose answer has the same head; the server drops the body for the client.
            method = "GET" if call.method == "HEAD" else call.method
            return PreparedRequest(method, target, headers, raw)
        body = call.body
        changed = body.get("model") != call.model
        if call.stream and call.endpoint != EMBEDDINGS:
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                body = dict(body)
                body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                          "include_usage": True}
                changed = True
        if changed and body is call.body and call.raw_body is not None:  # only the model differs
            data = with_model(call.raw_body, call.model, body)
        elif changed:
            body = dict(body) if body is call.body else body
            body["model"] = call.model
            data = orjson.dumps(body)
        else:
            data = call.raw_body if call.raw_body is not None else orjson.dumps(body)
        return PreparedRequest("POST", target, self._headers(call), data)

    def responses_path(self) -> str:
        return f"{self.base_path}/responses"

    def parse(self, call: UpstreamCall, body: bytes) -> ParsedResponse:
        if call.native_body is not None:
            return ParsedResponse(body, usage_of_body(body))
        if call.endpoint not in CANONICAL:
            return ParsedResponse(body, None)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ParsedResponse(body, None)
        usage = obj.get("usage") if isinstance(obj, dict) else None
        if isinstance(usage, dict):
            return ParsedResponse(body, Usage.from_openai(usage, obj))
        texts: list[str] = []
        if isinstance(obj, dict):
            completion_texts_of_chunk(obj, texts)
        return ParsedResponse(body, None, texts)

    def stream_decoder(self, call: UpstreamCall) -> StreamDecoder:
        if call.native_body is not None:
            return NativeResponsesDecoder()
        return PassthroughDecoder(strip_usage_chunk=not call.client_wants_usage)
