"""Conformance cases of the `bedrock` provider (Converse / ConverseStream / InvokeModel fixtures).

Stream fixtures are AWS event-stream bytes (`.bin`), written from the `.events.json` next to them.
"""

from __future__ import annotations

from typing import Any

from tests.providers.case import Case

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROVIDERS: list[dict[str, Any]] = [
    {"name": "bedrock", "type": "bedrock", "base_url": "{replay}/bedrock",
     "options": {"region": "eu-west-1", "access_key_id": "AKIDEXAMPLE",
                 "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
     "models": [{"name": "sonnet", "model": CLAUDE}, {"name": "titan", "model": "amazon.titan-embed-text-v2:0"},
                {"name": "cohere-embed", "model": "cohere.embed-english-v3"}]},
    {"name": "bedrock-key", "type": "bedrock", "base_url": "{replay}/bedrock", "api_key": "ABSK-test-key",
     "options": {"region": "us-east-1", "session_token": None},
     "models": [{"name": "nova", "model": "amazon.nova-lite-v1:0"}]},
]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
STREAM = "application/vnd.amazon.eventstream"


def case(name: str, request: dict[str, Any], upstream: str, **kw: Any) -> Case:
    return Case(kw.pop("provider", "bedrock"), "bedrock", name, request, upstream, **kw)


CASES = [
    case("converse_text", {"model": "sonnet", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}],
        "max_tokens": 100, "temperature": 0.1, "top_p": 0.9, "top_k": 40, "stop": ["STOP"], "seed": 1},
        "converse_text.json"),
    case("converse_tools", {"model": "sonnet", "tools": [WEATHER], "tool_choice": "required", "messages": [
        {"role": "user", "content": "Weather in Seattle?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "tooluse_prev", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "tooluse_prev", "content": "rainy"}]},
        "converse_tool_use.json"),
    # Claude's thinking on Bedrock refuses temperature and top_k too; maxTokens must exceed the budget
    case("thinking_drops_sampling", {"model": "sonnet", "reasoning_effort": "high", "temperature": 0.2,
                                     "top_k": 10, "max_tokens": 2000, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Think."},
                                     {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}}]}]},
        "converse_text.json"),
    case("api_key_bearer", {"model": "nova", "messages": [{"role": "user", "content": "Hi"}]},
         "converse_text.json", provider="bedrock-key"),
    case("stream_text", {"model": "sonnet", "stream": True, "stream_options": {"include_usage": True},
                         "messages": [{"role": "user", "content": "Hi"}]},
         "stream_text.bin", content_type=STREAM, chunk_size=29),
    case("stream_tool_use", {"model": "sonnet", "stream": True, "tools": [WEATHER],
                             "messages": [{"role": "user", "content": "Weather in Seattle?"}]},
         "stream_tool_use.bin", content_type=STREAM, chunk_size=100),
    case("stream_exception_event", {"model": "sonnet", "stream": True,
                                    "messages": [{"role": "user", "content": "Tell a story"}]},
         "stream_throttled.bin", content_type=STREAM),
    case("error_context_length", {"model": "sonnet", "messages": [{"role": "user", "content": "x"}]},
         "error_too_long.json", status=400,
         upstream_headers={"x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"}),
    case("error_bad_token", {"model": "sonnet", "messages": [{"role": "user", "content": "x"}]},
         "error_bad_token.json", status=403, upstream_headers={"x-amzn-errortype": "UnrecognizedClientException"}),
    case("error_throttled", {"model": "sonnet", "messages": [{"role": "user", "content": "x"}]},
         "error_throttled.json", status=429, upstream_headers={"x-amzn-errortype": "ThrottlingException"}),
    case("error_unavailable", {"model": "sonnet", "messages": [{"role": "user", "content": "x"}]},
         "error_unavailable.json", status=503, upstream_headers={"x-amzn-errortype": "ServiceUnavailableException"}),
    case("embeddings_titan", {"model": "titan", "input": "Hello world", "dimensions": 4, "encoding_format": "float"},
         "titan_embed.json", endpoint="embeddings"),
    case("embeddings_cohere", {"model": "cohere-embed", "input": ["first text", "second text"]},
         "cohere_embed.json", endpoint="embeddings"),
]
