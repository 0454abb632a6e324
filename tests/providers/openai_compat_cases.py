"""Conformance cases of `openai-compatible` presets: base URL and auth style (bodies pass through)."""

from __future__ import annotations

from typing import Any

from tests.providers.case import Case

PROVIDERS: list[dict[str, Any]] = [
    {"name": "groq", "type": "groq", "base_url": "{replay}/openai/v1", "api_key": "gsk-test",
     "models": ["llama-3.3-70b-versatile", {"name": "fast", "model": "llama-3.1-8b-instant"}]},
    {"name": "ollama", "type": "openai-compatible", "base_url": "{replay}/v1", "api_key": "ignored-by-preset",
     "options": {"preset": "ollama"}, "models": ["qwen2.5:0.5b"]},
]

CASES = [
    Case("groq", "openai_compat", "groq_bearer", {"model": "llama-3.3-70b-versatile", "messages": [
        {"role": "user", "content": "Hi"}], "vendor_knob": 1}, "chat_completion.json"),
    Case("ollama", "openai_compat", "ollama_no_key", {"model": "qwen2.5:0.5b", "messages": [
        {"role": "user", "content": "Hi"}]}, "chat_completion.json"),
]
