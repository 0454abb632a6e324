"""The normalised usage record of one request: token counts per class, in OpenAI's meaning, for every provider."""

from __future__ import annotations

from typing import Any

# More tokens than any request holds (2^28): an upstream's count past it is a bug, kept at this so that the
# ledger's 32-bit columns take the row, and sums of several counts, too (a refused row would stop its batch).
MAX_COUNT = 1 << 28


def _count(obj: Any, name: str) -> int:
    value = obj.get(name) if isinstance(obj, dict) else None
    return min(value, MAX_COUNT) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Usage:
    """Token usage of one request, normalised across providers.

    `prompt_tokens` keeps OpenAI's meaning: it *includes* the cached (read) tokens, the cache writes and the
    audio and image tokens of the prompt; `completion_tokens` includes the reasoning, audio and image tokens
    of the answer. The detail fields say how many of the total belong to each class, so that each token is
    charged once, at its class's price (usage.cost). `cache_write_1h_tokens` is the part of
    `cache_write_tokens` written for one hour; the rest was written for five minutes. `service_tier` is the
    tier the provider says it served the request at (OpenAI's `priority`, `flex`, …), which has its own prices;
    `web_searches` the server-side web searches it billed beside the tokens.
    """

    __slots__ = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
                 "cache_write_1h_tokens", "reasoning_tokens", "prompt_audio_tokens", "prompt_image_tokens",
                 "completion_audio_tokens", "completion_image_tokens", "web_searches", "service_tier", "estimated")

    def __init__(self, prompt_tokens: int = 0, completion_tokens: int = 0, *, cached_tokens: int = 0,
                 cache_write_tokens: int = 0, cache_write_1h_tokens: int = 0, reasoning_tokens: int = 0,
                 prompt_audio_tokens: int = 0, prompt_image_tokens: int = 0, completion_audio_tokens: int = 0,
                 completion_image_tokens: int = 0, web_searches: int = 0, service_tier: str = "",
                 estimated: bool = False) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cached_tokens = cached_tokens
        self.cache_write_tokens = cache_write_tokens
        self.cache_write_1h_tokens = cache_write_1h_tokens
        self.reasoning_tokens = reasoning_tokens
        self.prompt_audio_tokens = prompt_audio_tokens
        self.prompt_image_tokens = prompt_image_tokens
        self.completion_audio_tokens = completion_audio_tokens
        self.completion_image_tokens = completion_image_tokens
        self.web_searches = web_searches
        self.service_tier = service_tier
        self.estimated = estimated

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: dict[str, Any], answer: dict[str, Any] | None = None) -> Usage:
        """From an OpenAI `usage` object (chat, completions, embeddings), also the one the gateway emits
        (which adds `cache_write_tokens` to `prompt_tokens_details`); `answer`, the object holding it, may say
        the `service_tier` it was served at."""
        tier = answer.get("service_tier") if answer is not None else None
        prompt = usage.get("prompt_tokens_details")
        completion = usage.get("completion_tokens_details")
        return cls(_count(usage, "prompt_tokens"), _count(usage, "completion_tokens"),
                   cached_tokens=_count(prompt, "cached_tokens"),
                   cache_write_tokens=_count(prompt, "cache_write_tokens"),
                   cache_write_1h_tokens=_count(prompt, "cache_write_1h_tokens"),
                   prompt_audio_tokens=_count(prompt, "audio_tokens"),
                   prompt_image_tokens=_count(prompt, "image_tokens"),
                   reasoning_tokens=_count(completion, "reasoning_tokens"),
                   completion_audio_tokens=_count(completion, "audio_tokens"),
                   completion_image_tokens=_count(completion, "image_tokens"),
                   service_tier=tier if isinstance(tier, str) else "")

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__[2:-1] if getattr(self, name))
        return (f"Usage(prompt={self.prompt_tokens}, completion={self.completion_tokens}"
                f"{', ' + shown if shown else ''}, estimated={self.estimated})")
