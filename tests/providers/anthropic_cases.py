"""Conformance cases of the `anthropic` provider (Messages API fixtures from the API reference)."""

from __future__ import annotations

from typing import Any

from tests.providers.case import Case

PROVIDERS: list[dict[str, Any]] = [
    {"name": "anthropic", "type": "anthropic", "base_url": "{replay}/anthropic", "api_key": "sk-ant-test",
     "models": [{"name": "claude", "model": "claude-sonnet-4-5"}]},
    {"name": "anthropic-strict", "type": "anthropic", "base_url": "{replay}/anthropic", "api_key": "sk-ant-test",
     "models": [{"name": "claude-strict", "model": "claude-sonnet-4-5"}],
     "options": {"unsupported_params": "error", "default_max_tokens": 1024}},
]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
                   "required": ["location"]}}}
JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDA=="
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def case(name: str, request: dict[str, Any], upstream: str, **kw: Any) -> Case:
    return Case(kw.pop("provider", "anthropic"), "anthropic", name, request, upstream, **kw)


CASES = [
    case("text", {"model": "claude", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": "Hello"}],
        "max_tokens": 256, "temperature": 0.5, "top_p": 0.9, "stop": "\n\nHuman:", "user": "alice"},
        "message_text.json"),
    case("image_and_defaults", {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}],
        "logprobs": True, "presence_penalty": 0.5, "n": 1},
        "message_text.json"),
    case("tools", {"model": "claude", "tools": [WEATHER], "tool_choice": "auto", "parallel_tool_calls": False,
                   "reasoning_effort": "low", "max_tokens": 512, "messages": [
        {"role": "user", "content": "Weather in SF?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "toolu_prev", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_prev", "content": "15 degrees"},
        {"role": "user", "content": "And SF?"}]},
        "message_tool_use.json"),
    # Anthropic takes image/jpeg, not image/jpg; OpenAI's free-form metadata is not Anthropic's (user_id only)
    case("image_jpg_metadata_user", {"model": "claude", "max_tokens": 100, "user": "alice",
                                     "metadata": {"trace_id": "t-1"}, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{JPEG}"}}]}]},
        "message_text.json"),
    # thinking refuses temperature and top_k (left out, reported), and max_tokens must exceed its budget
    case("thinking_drops_sampling", {"model": "claude", "max_tokens": 1000, "reasoning_effort": "medium",
                                     "temperature": 0.3, "top_k": 5, "top_p": 0.97,
                                     "messages": [{"role": "user", "content": "Think."}]},
        "message_text.json"),
    case("stream_text_with_usage", {"model": "claude", "stream": True, "stream_options": {"include_usage": True},
                                    "messages": [{"role": "user", "content": "Hello"}]},
         "stream_text.sse", content_type="text/event-stream", chunk_size=37),
    case("stream_tool_use", {"model": "claude", "stream": True, "tools": [WEATHER], "reasoning_effort": "high",
                             "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                             "messages": [{"role": "user", "content": "Weather in SF?"}]},
         "stream_tool_use.sse", content_type="text/event-stream", chunk_size=64),
    case("stream_error_event", {"model": "claude", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
         "stream_error.sse", content_type="text/event-stream"),
    case("error_overloaded", {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]},
         "error_overloaded.json", status=529),
    case("error_context_length", {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]},
         "error_context_length.json", status=400),
    case("error_auth", {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]},
         "error_auth.json", status=401),
    case("error_rate_limit", {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]},
         "error_rate_limit.json", status=429, upstream_headers={"retry-after": "7"}),
]

# Rejected before any upstream call: checked by test_unsupported_params_rejected.
STRICT_REJECTED = {"model": "claude-strict", "messages": [{"role": "user", "content": "Hi"}], "seed": 3,
                   "logit_bias": {"1": 2}}
