"""The SDK-type checks of the conformance suite refuse the request shapes that providers refuse.

Each body below is what the gateway used to send (issue 19, item 8); the conformance suite runs the same checks
on every request the adapters build now.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.providers.sdk_types import Mismatch, check_anthropic, check_bedrock, check_gemini

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
REFS = {"type": "object", "properties": {"where": {"$ref": "#/$defs/place"}},
        "$defs": {"place": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_anthropic_types_accept_a_plain_request() -> None:
    check_anthropic({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": MESSAGES, "temperature": 0.5,
                     "metadata": {"user_id": "alice"}})


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/jpg", "data": "AAAA"}}]}]},
    {"messages": MESSAGES, "metadata": {"trace_id": "t-1"}},
    {"messages": MESSAGES, "temperature": "hot"},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache": True}]}]},
], ids=["image-jpg", "free-form-metadata", "bad-temperature", "unknown-block-field"])
def test_anthropic_types_refuse(body: dict[str, Any]) -> None:
    with pytest.raises(Mismatch):
        check_anthropic({"model": "claude-sonnet-4-5", "max_tokens": 10, **body})


def test_gemini_types_take_refs_only_in_parameters_json_schema() -> None:
    contents = [{"role": "user", "parts": [{"text": "Hi"}]}]
    check_gemini({"contents": contents, "tools": [{"functionDeclarations": [
        {"name": "go", "parametersJsonSchema": REFS}]}]})
    with pytest.raises(Mismatch):
        check_gemini({"contents": contents, "tools": [{"functionDeclarations": [{"name": "go", "parameters": REFS}]}]})
    check_gemini({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "go", "args": {}},
                                                            "thoughtSignature": "c2ln"}]}]})
    with pytest.raises(Mismatch):
        check_gemini({"contents": contents, "generationConfig": {"unknownKnob": 1}})


def test_bedrock_shapes() -> None:
    check_bedrock({"messages": [{"role": "user", "content": [{"text": "Hi"}]}],
                   "inferenceConfig": {"maxTokens": 10}}, "anthropic.claude-3-5-sonnet-20240620-v1:0")
    with pytest.raises(Mismatch):
        check_bedrock({"messages": [{"role": "user", "content": [{"image": {"format": "jpg", "source": {
            "bytes": "AAAA"}}}]}]}, "anthropic.claude-3-5-sonnet-20240620-v1:0")
    with pytest.raises(Mismatch):
        check_bedrock({"messages": [], "inferenceConfig": {"topK": 5}}, "m")
