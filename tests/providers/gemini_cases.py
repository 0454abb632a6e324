"""Conformance cases of the `gemini` provider (Gemini API fixtures from the API reference)."""

from __future__ import annotations

from typing import Any

from tests.providers.case import Case

PROVIDERS: list[dict[str, Any]] = [
    {"name": "gemini", "type": "gemini", "base_url": "{replay}/gemini", "api_key": "AIza-test",
     "models": [{"name": "flash", "model": "gemini-2.5-flash"}, "text-embedding-004"]},
]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
PLACE_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather of a place",
    "parameters": {"type": "object", "properties": {"place": {"$ref": "#/$defs/place"}}, "required": ["place"],
                   "$defs": {"place": {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}}}}}
JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDA=="


def case(name: str, request: dict[str, Any], upstream: str, **kw: Any) -> Case:
    return Case("gemini", "gemini", name, request, upstream, **kw)


CASES = [
    case("text_json_mode", {"model": "flash", "messages": [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": [{"type": "text", "text": "Favourite colour?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}}]}],
        "temperature": 0.2, "top_p": 0.8, "max_completion_tokens": 200, "stop": ["END"], "n": 2, "seed": 7,
        "response_format": {"type": "json_object"}, "reasoning_effort": "low", "logit_bias": {"5": 1}},
        "generate_text.json"),
    case("function_calls", {"model": "flash", "tools": [WEATHER],
                            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                            "messages": [
        {"role": "user", "content": "Weather in Boston and Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "call_a", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}]},
        "generate_function_call.json"),
    # $defs/$ref are JSON Schema, not the OpenAPI subset of `parameters`: they go in parametersJsonSchema
    case("tool_schema_refs", {"model": "flash", "tools": [PLACE_TOOL], "messages": [
        {"role": "user", "content": "Weather in Boston?"}]}, "generate_function_call_signed.json"),
    # the thought signature of a function call rides in its id to the client and comes back on the next turn
    case("thought_signature_round_trip", {"model": "flash", "tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Boston?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_0_0__thought__dGhvdWdodC1zaWduYXR1cmUtb2YtY2FsbC0w", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"location\":\"Boston, MA\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0_0__thought__dGhvdWdodC1zaWduYXR1cmUtb2YtY2FsbC0w",
         "content": "sunny"}]}, "generate_function_call_signed.json"),
    case("stream_text", {"model": "flash", "stream": True, "stream_options": {"include_usage": True},
                         "messages": [{"role": "user", "content": "Why is the sky blue?"}]},
         "stream_text.sse", content_type="text/event-stream", chunk_size=50),
    case("stream_function_call", {"model": "flash", "stream": True, "tools": [WEATHER], "tool_choice": "required",
                                  "messages": [{"role": "user", "content": "Weather in Boston?"}]},
         "stream_function_call.sse", content_type="text/event-stream"),
    case("stream_safety_stop", {"model": "flash", "stream": True, "messages": [{"role": "user", "content": "x"}]},
         "stream_safety.sse", content_type="text/event-stream"),
    case("embeddings", {"model": "text-embedding-004", "input": ["first text", "second text"],
                        "encoding_format": "float", "dimensions": 4},
         "batch_embed.json", endpoint="embeddings"),
    case("embeddings_base64", {"model": "text-embedding-004", "input": ["first text", "second text"],
                               "encoding_format": "base64"},
         "batch_embed.json", endpoint="embeddings"),
    case("error_rate_limit", {"model": "flash", "messages": [{"role": "user", "content": "x"}]},
         "error_rate_limit.json", status=429),
    case("error_bad_key", {"model": "flash", "messages": [{"role": "user", "content": "x"}]},
         "error_bad_key.json", status=400),
    case("error_context_length", {"model": "flash", "messages": [{"role": "user", "content": "x"}]},
         "error_context_length.json", status=400),
    case("error_unavailable", {"model": "flash", "messages": [{"role": "user", "content": "x"}]},
         "error_unavailable.json", status=503),
]
