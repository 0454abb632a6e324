"""The one table of which provider usage field feeds which `Usage` field, and the OpenAI usage object we emit."""

from __future__ import annotations

from typing import Any

from llm_gateway.pipeline.context import Usage

# provider usage field (dotted path) -> the Usage fields it adds to.
# OpenAI's `prompt_tokens` includes cached tokens and `completion_tokens` includes reasoning tokens, so fields
# a provider reports *separately* (Anthropic/Bedrock cache reads and writes, Gemini thoughts) are added to the
# totals as well as to their own detail field: every provider's record then means the same thing.
USAGE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "openai": {
        "prompt_tokens": ("prompt_tokens",),
        "completion_tokens": ("completion_tokens",),
        "prompt_tokens_details.cached_tokens": ("cached_tokens",),
        "completion_tokens_details.reasoning_tokens": ("reasoning_tokens",),
    },
    "anthropic": {
        "input_tokens": ("prompt_tokens",),
        "cache_read_input_tokens": ("prompt_tokens", "cached_tokens"),
        "cache_creation_input_tokens": ("prompt_tokens", "cache_write_tokens"),
        "output_tokens": ("completion_tokens",),
    },
    "gemini": {
        "promptTokenCount": ("prompt_tokens",),  # already includes cachedContentTokenCount
        "cachedContentTokenCount": ("cached_tokens",),
        "candidatesTokenCount": ("completion_tokens",),
        "thoughtsTokenCount": ("completion_tokens", "reasoning_tokens"),
    },
    "bedrock": {
        "inputTokens": ("prompt_tokens",),
        "cacheReadInputTokens": ("prompt_tokens", "cached_tokens"),
        "cacheWriteInputTokens": ("prompt_tokens", "cache_write_tokens"),
        "outputTokens": ("completion_tokens",),
    },
    "bedrock-embeddings": {
        "inputTextTokenCount": ("prompt_tokens",),
    },
}

_COMPILED = {name: [(path.split("."), targets) for path, targets in table.items()]
             for name, table in USAGE_FIELDS.items()}


def _lookup(obj: dict[str, Any], path: list[str]) -> int:
    value: Any = obj
    for part in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(part)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from(table: str, raw: dict[str, Any], into: Usage | None = None) -> Usage:
    """Add the counts of a provider usage object to `into` (a new Usage when None), following USAGE_FIELDS."""
    usage = into if into is not None else Usage()
    for path, targets in _COMPILED[table]:
        count = _lookup(raw, path)
        if count:
            for target in targets:
                setattr(usage, target, getattr(usage, target) + count)
    return usage


def openai_usage(usage: Usage) -> dict[str, Any]:
    """The OpenAI `usage` object for a normalised record."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens,
                                  "cache_write_tokens": usage.cache_write_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
