"""Providers that speak the Responses API themselves: which do, where the request goes, what is read back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_gateway.providers.base import CHAT, RESPONSES_WIRE, UpstreamCall
from llm_gateway.providers.openai_compat.responses_native import NativeResponsesDecoder
from llm_gateway.providers.registry import build_provider
from llm_gateway.settings import ProviderConfig

BODY = b'{"model": "public",  "input": "hi", "store": false}'


def provider(kind: str, **options: Any) -> Any:
    return build_provider(ProviderConfig(name="p", type=kind, base_url="http://up:1/base", api_key="sk-up",  # type: ignore[arg-type]
                                         options=options))


def call(native: bytes | None, stream: bool = False) -> UpstreamCall:
    return UpstreamCall(endpoint=CHAT, body={"model": "public", "messages": []}, model="deployed", stream=stream,
                        client_wants_usage=True, client_auth="Bearer sk-client", client_headers={},
                        native_body=native)


def test_which_providers_take_responses_requests_as_they_are() -> None:
    assert provider("openai").native_wire == RESPONSES_WIRE
    assert provider("azure").native_wire == RESPONSES_WIRE
    assert provider("openai-compatible").native_wire == ""
    assert provider("openai-compatible", responses_api=True).native_wire == RESPONSES_WIRE
    assert provider("openai-compatible", passthrough=True).native_wire == RESPONSES_WIRE
    assert provider("openai", responses_api=False).native_wire == ""
    assert provider("anthropic").native_wire != RESPONSES_WIRE
    with pytest.raises(ValueError, match="responses_api"):
        provider("openai", responses_api="yes")


def test_the_request_goes_as_it_came_but_for_the_model() -> None:
    sent = provider("openai").prepare(call(BODY, stream=True))
    assert (sent.method, sent.path) == ("POST", "/base/responses")
    assert sent.body == b'{"model": "deployed",  "input": "hi", "store": false}'
    assert ("authorization", "Bearer sk-up") in sent.headers and ("accept", "text/event-stream") in sent.headers
    azure = provider("azure").prepare(call(BODY))
    assert azure.path == "/base/openai/v1/responses" and azure.body == sent.body
    assert ("api-key", "sk-up") in azure.headers and not any(k == "authorization" for k, _ in azure.headers)
    assert provider("openai").prepare(call(None)).path == "/base/chat/completions"  # a translated request


def test_usage_is_read_from_the_answer_and_the_stream() -> None:
    usage = {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 9,
             "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 39}
    answer = orjson.dumps({"id": "resp_1", "object": "response", "output": [], "usage": usage})
    parsed = provider("openai").parse(call(BODY), answer)
    assert parsed.body == answer and parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.cached_tokens,
            parsed.usage.reasoning_tokens) == (30, 9, 10, 4)
    decoder = provider("openai").stream_decoder(call(BODY, stream=True))
    assert isinstance(decoder, NativeResponsesDecoder)
    stream = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hel"}\n\n'
              b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"lo"}\n\n'
              b'event: response.completed\ndata: {"type":"response.completed","response":{"usage":'
              + orjson.dumps(usage) + b"}}\n\n")
    out = decoder.feed(stream[:50]) + decoder.feed(stream[50:]) + decoder.finish()
    assert out == stream  # relayed byte for byte
    assert decoder.completion_texts() == ["Hel", "lo"]
    assert decoder.usage is not None and decoder.usage.total_tokens == 39
