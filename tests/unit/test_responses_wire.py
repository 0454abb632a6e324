"""The Responses wire translation: requests to chat bodies, chat answers and streams to Responses objects/events,
checked against the official SDK's types."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from llm_gateway.api.responses_stream import NativeStreamTap, ResponsesStreamEncoder
from llm_gateway.api.responses_wire import echo_of, history_for_native, input_items, to_chat_request, to_response
from llm_gateway.errors import BadRequest

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
PNG = "data:image/png;base64,iVBORw0KGgo="


def chat(req: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    body, dropped, _ = to_chat_request(req, input_items(req.get("input")))
    return body, dropped


def test_items_become_chat_messages() -> None:
    body, dropped = chat({"model": "m", "instructions": "Be brief.", "input": [
        {"role": "developer", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                     {"type": "input_image", "image_url": PNG, "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "function_call", "call_id": "call_a", "name": "look", "arguments": '{"x":1}'},
        {"type": "function_call", "call_id": "call_b", "name": "look", "arguments": '{"x":2}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "a cat"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "a hat"}]},
        {"role": "user", "content": "Thanks"}]})
    assert dropped == []
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "look", "arguments": '{"x":1}'}},
            {"id": "call_b", "type": "function", "function": {"name": "look", "arguments": '{"x":2}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "a cat"},
        {"role": "tool", "tool_call_id": "call_b", "content": "a hat"},
        {"role": "user", "content": "Thanks"}]


def test_settings_map_and_builtin_tools_are_dropped() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = {"model": "m", "input": "hi", "max_output_tokens": 99, "temperature": 0.2, "top_p": 0.9, "user": "u1",
           "reasoning": {"effort": "high"}, "parallel_tool_calls": False, "stream": True,
           "tools": [{"type": "function", "name": "f", "parameters": schema, "strict": True},
                     {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs"]}],
           "tool_choice": {"type": "function", "name": "f"},
           "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}}}
    body, dropped = chat(req)
    assert dropped == ["web_search", "file_search"]
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 99,
                    "temperature": 0.2, "top_p": 0.9, "user": "u1", "reasoning_effort": "high",
                    "parallel_tool_calls": False, "stream": True, "stream_options": {"include_usage": True},
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}],
                    "tool_choice": {"type": "function", "function": {"name": "f"}},
                    "response_format": {"type": "json_schema", "json_schema": {
                        "name": "out", "schema": schema, "strict": True}}}
    assert [t["type"] for t in echo_of(req, dropped)["tools"]] == ["function"]
    assert chat({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})[0][
        "response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("req", [
    {"input": "x"}, {"model": "m", "input": 3}, {"model": "m", "input": [{"role": "robot", "content": "x"}]},
    {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, {"model": "m", "input": []},
    {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
    {"model": "m", "input": "x", "stream": "yes"}])
def test_bad_requests_are_400(req: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        chat(req)


def test_a_chat_completion_becomes_a_valid_response() -> None:
    req = {"model": "m", "input": "x", "metadata": {"k": "v"}}
    completion = {"id": "c", "created": 5, "choices": [{"index": 0, "finish_reason": "length", "message": {
        "role": "assistant", "content": "partial", "reasoning_content": "thinking...",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2},
                  "completion_tokens_details": {"reasoning_tokens": 3}}}
    out = Response.model_validate(to_response(completion, "resp_1", "m", echo_of(req, []), {}))
    assert out.status == "incomplete" and out.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    assert [i.type for i in out.output] == ["reasoning", "message", "function_call"]
    assert out.output_text == "partial" and out.metadata == {"k": "v"}
    assert out.usage.input_tokens_details.cached_tokens == 2  # type: ignore[union-attr]
    assert out.usage.output_tokens_details.reasoning_tokens == 3  # type: ignore[union-attr]


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", **extra, "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


def _events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        event = orjson.loads(data[6:])
        assert name == f"event: {event['type']}"
        EVENTS.validate_python(event)
        out.append(event)
    return out


def test_the_stream_encoder_writes_valid_events_in_order() -> None:
    enc = ResponsesStreamEncoder("resp_s", "m", echo_of({"model": "m", "input": "x"}, []))
    raw = b"".join(enc.feed(piece) for piece in (
        _chunk({"role": "assistant", "content": ""}), _chunk({"reasoning_content": "hmm"}),
        _chunk({"content": "Hel"}), _chunk({"content": "lo"}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}]}),
        _chunk({}, "tool_calls"),
        b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}\n\n', b"data: [DONE]\n\n"))
    raw += enc.finish()
    events = _events(raw)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 4
    assert kinds.index("response.reasoning_summary_text.delta") < kinds.index("response.output_text.delta")
    final = Response.model_validate(events[-1]["response"])
    assert final.id == "resp_s" and final.output_text == "Hello" and final.usage.total_tokens == 10  # type: ignore[union-attr]
    calls = [(i.name, i.arguments) for i in final.output if i.type == "function_call"]  # type: ignore[union-attr]
    assert calls == [("f", '{"a":1}'), ("g", "{}")]
    assert enc.final == events[-1]["response"]


def test_a_stream_cut_by_an_error_fails_and_one_without_done_still_completes() -> None:
    enc = ResponsesStreamEncoder("resp_e", "m", echo_of({"model": "m"}, []))
    raw = enc.feed(_chunk({"content": "Hi"}) + b'data: {"error": {"message": "upstream went away"}}\n\n')
    events = _events(raw + enc.finish())
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "upstream went away"}
    enc = ResponsesStreamEncoder("resp_l", "m", echo_of({"model": "m"}, []))
    events = _events(enc.feed(_chunk({"content": "Hi"}, "length")) + enc.finish())
    assert events[-1]["type"] == "response.incomplete" and enc.final is not None
    assert enc.final["incomplete_details"] == {"reason": "max_output_tokens"}


def test_the_native_tap_sets_the_gateways_id_and_fails_on_an_error() -> None:
    tap = NativeStreamTap("resp_gw", {"id": "resp_gw", "previous_response_id": "resp_prev"})
    up = (b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":'
          b'{"id":"resp_up","object":"response","status":"in_progress","output":[]}}\n\n'
          b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":1,'
          b'"item_id":"msg_1","output_index":0,"content_index":0,"delta":"x"}\n\n')
    out = tap.feed(up)
    first, second = out.split(b"\n\n")[:2]
    assert orjson.loads(first.split(b"data: ")[1])["response"]["id"] == "resp_gw"
    assert second == up.split(b"\n\n")[1]  # not a lifecycle event: byte for byte
    failed = tap.feed(b'data: {"error": {"message": "cut"}}\n\n')
    assert failed.startswith(b"event: response.failed\n")
    assert tap.final is not None and tap.final["previous_response_id"] == "resp_prev"
    assert orjson.loads(failed.split(b"data: ")[1])["sequence_number"] == 2


def test_history_for_a_native_provider_drops_gateway_ids_and_unreplayable_reasoning() -> None:
    items = [{"type": "message", "id": "msg_gw", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
             {"type": "reasoning", "id": "rs_1", "summary": []},
             {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "e", "status": "completed"},
             {"type": "function_call", "id": "fc_gw", "call_id": "c", "name": "f", "arguments": "{}",
              "status": "completed"}]
    assert history_for_native(items) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "e"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]


def test_namespaced_functions_are_flattened_and_restored() -> None:
    req = {"model": "m", "input": [
        {"type": "function_call", "call_id": "c0", "namespace": "agents", "name": "spawn", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c0", "output": "ok"}],
        "tools": [{"type": "namespace", "name": "agents", "description": "Sub-agents", "tools": [
            {"type": "function", "name": "spawn", "description": "Start one", "parameters": {"type": "object"}}]}]}
    body, dropped, names = to_chat_request(req, input_items(req["input"]))
    assert dropped == [] and names == {"agents__spawn": ("agents", "spawn")}
    assert body["tools"][0]["function"]["name"] == "agents__spawn"
    assert body["messages"][0]["tool_calls"][0]["function"]["name"] == "agents__spawn"
    completion = {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}}]}}]}
    out = Response.model_validate(to_response(completion, "resp_n", "m", echo_of(req, []), names))
    assert (out.output[0].namespace, out.output[0].name) == ("agents", "spawn")  # type: ignore[union-attr]
    enc = ResponsesStreamEncoder("resp_n", "m", echo_of(req, []), names)
    events = _events(enc.feed(_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {
        "name": "agents__spawn", "arguments": "{}"}}]}, "tool_calls") + b"data: [DONE]\n\n"))
    assert events[-1]["response"]["output"][0]["namespace"] == "agents"
