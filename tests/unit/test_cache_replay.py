"""Streams assembled into a chat.completion, and chat.completions replayed as chunk streams."""

from __future__ import annotations

import orjson

from llm_gateway.cache.replay import StreamCapture, answer_calls_tools, sse_events
from llm_gateway.pipeline.context import Usage
from llm_gateway.providers.sse import frame

HEAD = {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m", "system_fingerprint": "fp"}


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return frame({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_capture_rebuilds_text_and_tool_calls_across_split_bytes() -> None:
    stream = b"".join([
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get", "arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chunk({}, "tool_calls"), b"data: [DONE]\n\n"])
    capture = StreamCapture()
    for i in range(0, len(stream), 7):  # events split anywhere
        capture.feed(stream[i:i + 7])
    answer = orjson.loads(capture.result(Usage(3, 4)) or b"")
    message = answer["choices"][0]["message"]
    assert message["content"] == "Hello"
    assert message["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "get", "arguments": '{"a":1}'}}]
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert answer["id"] == "c1" and answer["object"] == "chat.completion" and answer["system_fingerprint"] == "fp"
    assert answer_calls_tools(answer)


def test_capture_refuses_cut_or_failed_streams() -> None:
    cut = StreamCapture()
    cut.feed(chunk({"content": "Hel"}))
    assert cut.result(None) is None  # no finish_reason: the stream did not end
    failed = StreamCapture()
    failed.feed(chunk({"content": "Hel"}) + frame({"error": {"message": "boom"}}))
    assert failed.result(None) is None


def test_replay_round_trip() -> None:
    answer = {"id": "c1", "object": "chat.completion", "created": 7, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    events = sse_events(answer, with_usage=True)
    assert events[-1] == b"data: [DONE]\n\n"
    assert orjson.loads(events[-2][6:])["usage"] == answer["usage"]
    assert len(sse_events(answer, with_usage=False)) == len(events) - 1
    capture = StreamCapture()
    capture.feed(b"".join(events))
    rebuilt = orjson.loads(capture.result(Usage(1, 2)) or b"")
    assert rebuilt["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                                   "logprobs": None, "finish_reason": "stop"}]
    assert not answer_calls_tools(rebuilt)
