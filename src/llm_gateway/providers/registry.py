"""Provider types by name: adding a provider is one folder under providers/ and one line here."""

from __future__ import annotations

from llm_gateway.providers.anthropic.adapter import AnthropicProvider
from llm_gateway.providers.azure.adapter import AzureProvider
from llm_gateway.providers.base import Provider
from llm_gateway.providers.bedrock.adapter import BedrockProvider
from llm_gateway.providers.gemini.adapter import GeminiProvider
from llm_gateway.providers.openai_compat.adapter import OpenAICompatibleProvider
from llm_gateway.providers.openai_compat.preset_provider import PresetProvider
from llm_gateway.providers.vertex.adapter import VertexProvider
from llm_gateway.settings import ProviderConfig

PROVIDER_TYPES: dict[str, type[Provider]] = {
    "openai": OpenAICompatibleProvider,
    "openai-compatible": PresetProvider,
    "anthropic": AnthropicProvider,
    "azure": AzureProvider,
    "gemini": GeminiProvider,
    "bedrock": BedrockProvider,
    "vertex": VertexProvider,
}


def build_provider(config: ProviderConfig) -> Provider:
    cls = PROVIDER_TYPES.get(config.type)
    if cls is None:
        raise ValueError(f"providers.{config.name}: provider type {config.type!r} is not available "
                         f"(available: {', '.join(sorted(PROVIDER_TYPES))})")
    return cls(config)
