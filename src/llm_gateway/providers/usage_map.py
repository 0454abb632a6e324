"""The one table of which provider usage field feeds which `Usage` field, and the OpenAI usage object we emit."""

from __future__ import annotations

from typing import Any

from llm_gateway.accounting.usage_types import MAX_COUNT, Usage

# provider usage field (dotted path) -> the Usage fields it adds to. `list[key=value].field` reads `field` of
# the item of a list whose `key` is `value` (Gemini's per-modality counts, Bedrock's cache writes per TTL).
# OpenAI's `prompt_tokens` includes cached tokens and `completion_tokens` includes reasoning tokens, so fields
# a provider reports *separately* (Anthropic/Bedrock cache reads and writes, Gemini thoughts and tool-use
# prompts) are added to the totals as well as to their own detail field: every provider's record then means
# the same thing, and the cost charges each token once (usage.cost).
USAGE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "openai": {
        "prompt_tokens": ("prompt_tokens",),
        "completion_tokens": ("completion_tokens",),
        "prompt_tokens_details.cached_tokens": ("cached_tokens",),
        "prompt_tokens_details.audio_tokens": ("prompt_audio_tokens",),
        "completion_tokens_details.reasoning_tokens": ("reasoning_tokens",),
        "completion_tokens_details.audio_tokens": ("completion_audio_tokens",),
    },
    "anthropic": {
        "input_tokens": ("prompt_tokens",),
        "cache_read_input_tokens": ("prompt_tokens", "cached_tokens"),
        # the total of both TTLs; `cache_creation` splits it (absent: all were 5-minute writes)
        "cache_creation_input_tokens": ("prompt_tokens", "cache_write_tokens"),
        "cache_creation.ephemeral_1h_input_tokens": ("cache_write_1h_tokens",),
        "output_tokens": ("completion_tokens",),
    },
    "gemini": {
        "promptTokenCount": ("prompt_tokens",),  # already includes cachedContentTokenCount
        "toolUsePromptTokenCount": ("prompt_tokens",),  # billed as input, not in promptTokenCount
        "cachedContentTokenCount": ("cached_tokens",),
        "promptTokensDetails[modality=AUDIO].tokenCount": ("prompt_audio_tokens",),
        "promptTokensDetails[modality=IMAGE].tokenCount": ("prompt_image_tokens",),
        "candidatesTokenCount": ("completion_tokens",),
        "candidatesTokensDetails[modality=AUDIO].tokenCount": ("completion_audio_tokens",),
        "candidatesTokensDetails[modality=IMAGE].tokenCount": ("completion_image_tokens",),
        "thoughtsTokenCount": ("completion_tokens", "reasoning_tokens"),
    },
    "bedrock": {
        "inputTokens": ("prompt_tokens",),
        "cacheReadInputTokens": ("prompt_tokens", "cached_tokens"),
        "cacheWriteInputTokens": ("prompt_tokens", "cache_write_tokens"),
        "cacheDetails[ttl=1h].inputTokens": ("cache_write_1h_tokens",),
        "outputTokens": ("completion_tokens",),
    },
    "bedrock-embeddings": {
        "inputTextTokenCount": ("prompt_tokens",),
    },
}

Step = tuple[str, str, str]  # (key, list item key, list item value); the last two empty for a plain key


def _compile(path: str) -> list[Step]:
    steps = []
    for part in path.split("."):
        key, _, selector = part.partition("[")
        item_key, _, item_value = selector.rstrip("]").partition("=")
        steps.append((key, item_key, item_value))
    return steps


_COMPILED = {name: [(_compile(path), targets) for path, targets in table.items()]
             for name, table in USAGE_FIELDS.items()}


def _lookup(obj: dict[str, Any], path: list[Step]) -> int:
    value: Any = obj
    for key, item_key, item_value in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(key)
        if item_key:
            if not isinstance(value, list):
                return 0
            value = next((item for item in value if isinstance(item, dict) and item.get(item_key) == item_value),
                         None)
    return min(value, MAX_COUNT) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


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
                                  "cache_write_tokens": usage.cache_write_tokens,
                                  **_some(cache_write_1h_tokens=usage.cache_write_1h_tokens,
                                          audio_tokens=usage.prompt_audio_tokens,
                                          image_tokens=usage.prompt_image_tokens)},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens,
                                      **_some(audio_tokens=usage.completion_audio_tokens,
                                              image_tokens=usage.completion_image_tokens)},
    }


def _some(**counts: int) -> dict[str, int]:
    """The counts that are not 0: details a provider did not report stay out of the client's usage object."""
    return {name: count for name, count in counts.items() if count}
