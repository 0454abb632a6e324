"""The Anthropic-compatible ingress (/v1/messages) through the official `anthropic` SDK, any upstream model."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import orjson
import pytest
from tests.conftest import GatewayProcess, launch, metric_value
from tests.providers.replay import ReplayServer, Reply
from tests.upstream import Upstream

FIXTURES = Path(__file__).parents[1] / "providers" / "fixtures"

WEATHER_TOOL = {"name": "get_weather", "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, replay: ReplayServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    """One gateway for the module: the test upstream for any model, and replayed upstreams for two names."""
    gw = launch([], tmp_path_factory.mktemp("ingress"), config={"providers": [
        {"name": "replayed", "type": "openai-compatible", "base_url": f"{replay.url}/v1", "models": ["tool-streamer"]},
        {"name": "claude-direct", "type": "anthropic", "base_url": f"{replay.url}/anthropic", "api_key": "sk-ant-up",
         "models": [{"name": "claude-via-anthropic", "model": "claude-sonnet-4-5"}]},
        {"name": "openai", "type": "openai-compatible", "base_url": f"{upstream.url}/v1", "models": ["*"]}]})
    yield gw
    gw.stop()


def client(gw: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-client", max_retries=0)


def test_message_text_system_and_usage(gateway: GatewayProcess, upstream: Upstream) -> None:
    out = client(gateway).messages.create(model="gpt-4o-mini", max_tokens=50, system="You are terse.",
                                          messages=[{"role": "user", "content": "Say hello"}],
                                          stop_sequences=["END"], extra_body={"temperature": 0.3})
    assert out.type == "message" and out.role == "assistant" and out.model == "gpt-4o-mini"
    assert [b.type for b in out.content] == ["text"]
    assert out.content[0].text == "The quick brown fox jumps"  # type: ignore[union-attr]
    assert out.stop_reason == "end_turn"
    assert (out.usage.input_tokens, out.usage.output_tokens) == (11, 5)
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-ant-client"  # x-api-key carries the client's key
    assert sent.body == {"model": "gpt-4o-mini", "max_tokens": 50, "temperature": 0.3, "stop": ["END"],
                         "messages": [{"role": "system", "content": "You are terse."},
                                      {"role": "user", "content": "Say hello"}]}
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_requests_total",
                        {"model": "gpt-4o-mini", "provider": "openai", "status": "200"}) >= 1


def test_message_stream_events_and_usage(gateway: GatewayProcess, upstream: Upstream) -> None:
    with client(gateway).messages.stream(model="m", max_tokens=20,
                                         messages=[{"role": "user", "content": "Hi"}]) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    raw = [e for e in events if e not in ("text",)]
    assert raw[0] == "message_start" and raw[-1] == "message_stop"
    assert raw.count("content_block_start") == raw.count("content_block_stop") == 1
    assert final.content[0].text == "The quick brown fox jumps"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 5)


def test_tools_and_tool_results_round_trip(gateway: GatewayProcess, upstream: Upstream) -> None:
    c = client(gateway)
    out = c.messages.create(model="m", max_tokens=50, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                            tool_choice={"type": "any"}, messages=[{"role": "user", "content": "Weather?"}])
    assert out.stop_reason == "tool_use"
    block = out.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    sent = upstream.requests[-1].body
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city", "parameters": WEATHER_TOOL["input_schema"]}}]
    assert sent["tool_choice"] == "required"
    c.messages.create(model="m", max_tokens=50, messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                                     {"type": "text", "text": "And tomorrow?"}]}])
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "And tomorrow?"}]


def test_images_thinking_and_json_output(gateway: GatewayProcess, upstream: Upstream) -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    client(gateway).messages.create(
        model="m", max_tokens=5000, thinking={"type": "enabled", "budget_tokens": 4000},
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "text", "text": "What is this?"}]}])
    body = upstream.requests[-1].body
    assert body["reasoning_effort"] == "medium"
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "text", "text": "What is this?"}]}]


def test_errors_are_anthropic_shaped(gateway: GatewayProcess) -> None:
    c = client(gateway)
    with pytest.raises(anthropic.RateLimitError) as rate:
        c.messages.create(model="error-429", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert rate.value.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "simulated 429"}}
    with pytest.raises(anthropic.InternalServerError) as server:
        c.messages.create(model="error-500", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert server.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    missing = httpx.post(f"{gateway.url}/v1/messages", json={"model": "m", "messages": []})
    assert missing.status_code == 400
    assert missing.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "max_tokens: field required"}}
    bad = httpx.post(f"{gateway.url}/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_anthropic_not_found(gateway_factory: object, upstream: Upstream) -> None:
    gw = gateway_factory(config={"providers": [  # type: ignore[operator]
        {"name": "local", "type": "openai-compatible", "base_url": f"{upstream.url}/v1", "models": ["known"]}]})
    with pytest.raises(anthropic.NotFoundError) as err:
        client(gw).messages.create(model="unknown", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    count = client(gw).messages.count_tokens(model="known", system="Be brief.",
                                             messages=[{"role": "user", "content": "Hello there"}])
    assert 8 <= count.input_tokens <= 20
    with pytest.raises(anthropic.NotFoundError):
        client(gw).messages.count_tokens(model="unknown", messages=[{"role": "user", "content": "x"}])


def test_count_tokens_matches_the_gateway_tokenizer(gateway: GatewayProcess) -> None:
    c = client(gateway)
    short = c.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    long = c.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "Hello " * 50}])
    assert long.input_tokens - short.input_tokens == 50  # "Hello" and " Hello" are one token each


def test_count_tokens_counts_images_by_size_and_tools_by_the_recipe(gateway: GatewayProcess) -> None:
    c = client(gateway)
    ihdr = struct.pack(">IIBBBBB", 1024, 1024, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(png).decode()}}
    text = {"type": "text", "text": "What is this?"}
    plain = c.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": [text]}])
    pictured = c.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": [text, image]}])
    assert pictured.input_tokens - plain.input_tokens == 765  # 4 tiles of 170 + 85 on gpt-4o
    mini = c.messages.count_tokens(model="gpt-4o-mini", messages=[{"role": "user", "content": [text, image]}])
    assert mini.input_tokens - plain.input_tokens == 25_501  # 4 tiles of 5,667 + 2,833 on gpt-4o-mini
    # the cookbook's weather tool: 7 + "get_weather:Weather of a city" + 3 + 3 + "city:string:" + 12 on gpt-4o
    tooled = c.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": [text]}],
                                     tools=[WEATHER_TOOL])  # type: ignore[list-item]
    assert tooled.input_tokens - plain.input_tokens == 7 + 7 + 3 + 3 + 3 + 12


def _anthropic_events(raw: bytes) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        out.append((name_line[7:], orjson.loads(data_line[6:])))
    return out


def test_streamed_tool_call_from_an_openai_upstream(gateway: GatewayProcess, replay: ReplayServer) -> None:
    replay.reply = Reply(200, (FIXTURES / "openai_compat" / "stream_tool_calls.sse").read_bytes(),
                         "text/event-stream", chunk_size=45)
    request = {"model": "tool-streamer", "max_tokens": 100, "stream": True, "tools": [WEATHER_TOOL],
               "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    raw = httpx.post(f"{gateway.url}/v1/messages", json=request, headers={"x-api-key": "k"}, timeout=10)
    assert raw.status_code == 200 and raw.headers["content-type"] == "text/event-stream"
    assert _anthropic_events(raw.content) == [
        ("message_start", {"type": "message_start", "message": {
            "id": "chatcmpl-9xTool", "type": "message", "role": "assistant", "model": "tool-streamer", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {
                "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"'}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": "location"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": '":"Paris"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"input_tokens": 18, "output_tokens": 17, "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 64}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    sent = orjson.loads(replay.received[-1].body)
    assert sent["stream_options"] == {"include_usage": True}
    sdk_request = {k: v for k, v in request.items() if k != "stream"}
    with client(gateway).messages.stream(**sdk_request) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [("tool_use", {"location": "Paris"})]
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (18, 17, 64)


# A Messages request as a client may write it: its own spacing, cache_control on blocks, two text blocks that
# must stay two, max_tokens that must stay as it is, a nested "model" that must not be touched.
NATIVE_REQUEST = (b'{"model": "claude-via-anthropic",  "max_tokens": 16000,\n "system": [{"type": "text", '
                  b'"text": "big doc", "cache_control": {"type": "ephemeral"}}],\n "messages": [{"role": "user", '
                  b'"content": [{"type": "text", "text": "big doc"}, {"type": "text", "text": "question", '
                  b'"cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],\n "temperature": 0.70, '
                  b'"metadata": {"user_id": "u-1"}, "tools": [{"name": "pick", "description": "Pick a model", '
                  b'"input_schema": {"type": "object", "properties": {"model": {"type": "string", '
                  b'"default": "claude-via-anthropic"}}}}]}')


def test_anthropic_client_to_anthropic_provider_keeps_its_bytes(gateway: GatewayProcess,
                                                                replay: ReplayServer) -> None:
    """Same wire format on both sides: the upstream gets the client's bytes but for the model name, and the
    client gets the upstream's answer as it came; only the usage is read on the way."""
    answer = (FIXTURES / "anthropic" / "message_tool_use.json").read_bytes()
    replay.reply = Reply(200, answer)
    response = httpx.post(f"{gateway.url}/v1/messages", content=NATIVE_REQUEST, timeout=10, headers={
        "x-api-key": "sk-ant-client", "content-type": "application/json", "anthropic-version": "2023-06-01",
        "anthropic-beta": "tools-2024-04-04"})
    assert response.status_code == 200
    sent = replay.received[-1]
    assert sent.headers["x-api-key"] == "sk-ant-up" and sent.headers["anthropic-beta"] == "tools-2024-04-04"
    assert sent.body == NATIVE_REQUEST.replace(b'"model": "claude-via-anthropic"', b'"model": "claude-sonnet-4-5"',
                                               1)
    assert response.content == answer
    assert response.headers["request-id"] == response.headers["x-request-id"]
    # and through the official SDK, which reads it as it would read Anthropic's own answer
    raw = client(gateway).messages.with_raw_response.create(
        model="claude-via-anthropic", max_tokens=300, system="Be brief.", tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather?"}])
    out = raw.parse()
    assert [b.type for b in out.content] == ["thinking", "text", "tool_use"]
    assert out.content[2].input == {"location": "San Francisco, CA", "unit": "celsius"}  # type: ignore[union-attr]
    assert out.stop_reason == "tool_use" and out.usage.input_tokens == 472 and out.usage.output_tokens == 89
    assert out._request_id and out._request_id == raw.headers["x-request-id"]


def test_anthropic_stream_to_anthropic_provider_is_relayed_as_is(gateway: GatewayProcess,
                                                                 replay: ReplayServer) -> None:
    stream = (FIXTURES / "anthropic" / "stream_tool_use.sse").read_bytes()
    replay.reply = Reply(200, stream, "text/event-stream", chunk_size=23)
    with client(gateway).messages.stream(model="claude-via-anthropic", max_tokens=300,
                                         tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                         messages=[{"role": "user", "content": "Weather?"}]) as events:
        final = events.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "I need the weather tool."  # type: ignore[union-attr]
    assert final.content[2].input == {"location": "San Francisco, CA", "unit": "fahrenheit"}  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (472, 89)
    raw = httpx.post(f"{gateway.url}/v1/messages", timeout=10, headers={"x-api-key": "k"}, json={
        "model": "claude-via-anthropic", "max_tokens": 300, "stream": True,
        "messages": [{"role": "user", "content": "Weather?"}]})
    assert raw.content == stream.replace(b"\r\n", b"\n")
    assert orjson.loads(replay.received[-1].body)["stream"] is True


def test_overloaded_upstream_reaches_the_anthropic_sdk_as_529(gateway: GatewayProcess,
                                                              replay: ReplayServer) -> None:
    replay.reply = Reply(529, (FIXTURES / "anthropic" / "error_overloaded.json").read_bytes())
    with pytest.raises(anthropic.OverloadedError) as caught:
        client(gateway).messages.create(model="claude-via-anthropic", max_tokens=30,
                                        messages=[{"role": "user", "content": "Hi"}])
    err = caught.value
    assert err.status_code == 529
    assert err.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert err.request_id and err.request_id == err.response.headers["x-request-id"]


def test_a_claude_code_shaped_request(gateway: GatewayProcess, upstream: Upstream) -> None:
    """What Claude Code sends: `?beta=true`, bearer auth, system and tools with cache_control, metadata."""
    body = {"model": "gpt-4o-mini", "max_tokens": 32000, "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": " Be concise."}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]}],
            "tools": [{"name": "Bash", "description": "Run a command", "cache_control": {"type": "ephemeral"},
                       "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
            "metadata": {"user_id": "user_abc_session_1"}, "temperature": 1}
    response = httpx.post(f"{gateway.url}/v1/messages?beta=true", json=body, timeout=10, headers={
        "authorization": "Bearer sk-gateway-key", "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"})
    assert response.status_code == 200
    events = _anthropic_events(response.content)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    text = "".join(str(e[1]["delta"]["text"]) for e in events if e[0] == "content_block_delta")  # type: ignore[index]
    assert text == "The quick brown fox jumps"
    sent = upstream.requests[-1]
    assert sent.headers["Authorization"] == "Bearer sk-gateway-key"
    assert sent.body["messages"] == [{"role": "system", "content": "You are Claude Code. Be concise."},
                                     {"role": "user", "content": "list files"}]
    assert sent.body["user"] == "user_abc_session_1"
    assert sent.body["tools"][0]["function"]["name"] == "Bash"
