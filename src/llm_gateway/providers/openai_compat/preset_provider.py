"""The `openai-compatible` provider type with its presets (`options.preset`)."""

from __future__ import annotations

from typing import Any

from llm_gateway.providers.openai_compat.adapter import OpenAICompatibleProvider
from llm_gateway.providers.openai_compat.presets import PRESET_NAMES, PRESETS


class PresetProvider(OpenAICompatibleProvider):
    """`openai-compatible` with an optional `options.preset`; without one it is the plain pass-through adapter."""

    def __init__(self, config: Any) -> None:
        name = config.options.get("preset")
        if name is not None and name not in PRESETS:
            raise ValueError(f"providers.{config.name}.options.preset: unknown preset {name!r} "
                             f"(known: {', '.join(PRESET_NAMES)})")
        self.preset = PRESETS.get(name) if name else None
        super().__init__(config)
        if self.preset is not None and self.preset.auth == "none":
            self._auth = None

    def default_base_url(self) -> str:
        if self.preset is not None:
            return self.preset.base_url
        return super().default_base_url()
