"""The Anthropic wire format at the edge: request conversion and the OpenAI-chunks → Messages-events machine."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_gateway.api.anthropic_stream import MessagesStreamEncoder
from llm_gateway.api.anthropic_wire import error_body, to_message, to_openai_request
from llm_gateway.errors import BadRequest
from llm_gateway.providers.anthropic.response import MessagesStreamDecoder


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "c1", "choices": [] if delta is None else
                            [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def names(raw: bytes) -> list[str]:
    return [block.split("\n", 1)[0][7:] for block in raw.decode().strip().split("\n\n")]


def test_blocks_open_and_close_as_the_delta_kind_changes() -> None:
    enc = MessagesStreamEncoder("m")
    out = enc.feed(chunk({"role": "assistant", "content": ""}) + chunk({"reasoning_content": "hmm"}) +
                   chunk({"content": "Hi"}) + chunk({"content": " there"}))
    out += enc.feed(chunk({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}]}))
    out += enc.feed(chunk({"tool_calls": [{"index": 1, "id": "t2", "function": {"name": "g", "arguments": ""}}]}))
    out += enc.feed(chunk({}, "tool_calls") + b"data: [DONE]\n\n")
    assert names(out) == ["message_start",
                          "content_block_start", "content_block_delta", "content_block_stop",  # thinking
                          "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                          "content_block_start", "content_block_delta", "content_block_stop",  # tool t1
                          "content_block_start", "content_block_stop",  # tool t2
                          "message_delta", "message_stop"]
    assert enc.done and enc.finish() == b""
    assert b'"stop_reason":"tool_use"' in out


def test_an_openai_stream_without_done_is_still_closed() -> None:
    enc = MessagesStreamEncoder("m")
    out = enc.feed(chunk({"content": "partial"}))
    out += enc.finish()
    assert names(out) == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                          "message_delta", "message_stop"]


def test_an_error_chunk_becomes_an_error_event() -> None:
    enc = MessagesStreamEncoder("m")
    out = enc.feed(chunk({"content": "x"}) + b'data: {"error": {"message": "upstream went away", '
                   b'"type": "rate_limit_error"}}\n\n')
    assert names(out)[-1] == "error"
    assert out.decode().strip().split("\n")[-1] == (
        'data: {"type":"error","error":{"type":"rate_limit_error","message":"upstream went away"}}')
    assert enc.finish() == b""


def test_request_conversion_rejects_what_it_cannot_carry() -> None:
    with pytest.raises(BadRequest, match="only client tools"):
        to_openai_request({"model": "m", "max_tokens": 5, "messages": [],
                           "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    with pytest.raises(BadRequest, match="blocks of type 'document' are not supported"):
        to_openai_request({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "data": "x"}}]}]})


def test_response_conversion_and_error_shape() -> None:
    message = to_message({"id": "x", "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 2,
                                    "prompt_tokens_details": {"cached_tokens": 4}}}, "m")
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"] == {"input_tokens": 6, "output_tokens": 2, "cache_creation_input_tokens": 0,
                                "cache_read_input_tokens": 4}
    assert orjson.loads(error_body(429, b'{"error": {"message": "slow down"}}')) == {
        "type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert orjson.loads(error_body(529, b"not json"))["error"]["type"] == "overloaded_error"


def test_provider_stream_without_message_stop_still_ends_with_done() -> None:
    dec = MessagesStreamDecoder("claude", wants_usage=True)
    out = dec.feed(b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","usage":'
                   b'{"input_tokens":3,"output_tokens":1}}}\n\nevent: content_block_delta\ndata: {"type":'
                   b'"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n')
    out += dec.finish()
    assert out.endswith(b"data: [DONE]\n\n")
    assert dec.usage is not None and dec.usage.prompt_tokens == 3
    assert dec.completion_texts() == ["Hi"]
