"""Presets for OpenAI-compatible servers: a default base URL and how the API key is sent (data only: the
config schema imports it).

Choose one with `type: openai-compatible` and `options: {preset: groq}`, or with the preset name as the type
(`type: groq`, expanded by the config loader). `base_url` still overrides the preset's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    auth: str = "bearer"  # "bearer": Authorization: Bearer <api_key>; "none": no key is sent


PRESETS: dict[str, Preset] = {
    "vllm": Preset("http://127.0.0.1:8000/v1"),
    "ollama": Preset("http://127.0.0.1:11434/v1", auth="none"),
    "llama.cpp": Preset("http://127.0.0.1:8080/v1", auth="none"),
    "tgi": Preset("http://127.0.0.1:8080/v1"),
    "groq": Preset("https://api.groq.com/openai/v1"),
    "together": Preset("https://api.together.xyz/v1"),
    "mistral": Preset("https://api.mistral.ai/v1"),
    "deepseek": Preset("https://api.deepseek.com/v1"),
    "openrouter": Preset("https://openrouter.ai/api/v1"),
}
PRESET_NAMES = tuple(PRESETS)
