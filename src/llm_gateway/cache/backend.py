"""The exact-match store's interface: answers by key, each labelled with its model so it can be cleared by model."""

from __future__ import annotations

from typing import Protocol


class CacheBackend(Protocol):
    """Values are the answer bytes; `ttl` is seconds. A backend that fails answers like an empty cache."""

    name: str

    async def get(self, key: str, model: str) -> bytes | None: ...

    async def set(self, key: str, model: str, value: bytes, ttl: float) -> None: ...

    async def clear(self, model: str | None = None) -> int:
        """Remove every answer (of one model, when given); return how many went."""
        ...

    async def close(self) -> None: ...
