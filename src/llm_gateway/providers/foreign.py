"""Other gateways' names for our provider types: the Go seed's provider names and LiteLLM's model prefixes and
`litellm_params`, read by the config importers (llm_gateway.config)."""

from __future__ import annotations

from typing import Any

from llm_gateway.providers.openai_compat.presets import PRESET_NAMES

_TYPES = ("openai", "azure", "anthropic", "gemini", "bedrock")  # settings and the registry import us
# a provider's name that says what it is (the Go seed infers `type` from it)
_NAME_TYPES = {"google": "gemini", "vertex": "gemini", "vertex_ai": "gemini", "claude": "anthropic",
               "azure-openai": "azure", "azure_openai": "azure", "azureopenai": "azure", "aws": "bedrock",
               "aws-bedrock": "bedrock"}
# LiteLLM's provider prefix (`anthropic/claude-...`) -> our type, or an OpenAI-compatible preset
LITELLM_TYPES = {"openai": "openai", "text-completion-openai": "openai", "azure": "azure",
                 "azure_ai": "openai-compatible", "anthropic": "anthropic", "bedrock": "bedrock",
                 "bedrock_converse": "bedrock", "vertex_ai": "gemini", "vertex_ai_beta": "gemini", "gemini": "gemini",
                 "openai_compatible": "openai-compatible", "custom_openai": "openai-compatible",
                 "hosted_vllm": "vllm", "vllm": "vllm", "ollama": "ollama", "ollama_chat": "ollama", "groq": "groq",
                 "together_ai": "together", "mistral": "mistral", "deepseek": "deepseek", "openrouter": "openrouter",
                 "llamafile": "llama.cpp"}
_AZURE_API_VERSION = "2024-10-21"
_BEDROCK_PARAMS = (("region", "aws_region_name"), ("access_key_id", "aws_access_key_id"),
                   ("secret_access_key", "aws_secret_access_key"), ("session_token", "aws_session_token"))


def type_from_name(name: str) -> str | None:
    """The provider type a provider's name implies: `openai`, `anthropic`, `groq`, `google`, ..."""
    low = name.lower()
    if low in _TYPES or low in PRESET_NAMES:
        return low
    return _NAME_TYPES.get(low)


def litellm_options(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Our `providers[].options` from a LiteLLM deployment's `litellm_params`."""
    if kind == "azure":
        return {"api_version": params.get("api_version") or _AZURE_API_VERSION}
    if kind == "bedrock":
        return {ours: params[theirs] for ours, theirs in _BEDROCK_PARAMS if params.get(theirs)}
    return {}


def litellm_base_url(prefix: str, api_base: str) -> str:
    """Our `base_url` of a LiteLLM `api_base`: Ollama's is given without the OpenAI-compatible `/v1`."""
    base = api_base.rstrip("/")
    if prefix in ("ollama", "ollama_chat") and not base.endswith("/v1"):
        return base + "/v1"
    return base


def litellm_model(name: str) -> str:
    """`azure/gpt-4o` (a LiteLLM `base_model`) -> `gpt-4o`."""
    prefix, sep, rest = name.partition("/")
    return rest if sep and prefix in LITELLM_TYPES else name
