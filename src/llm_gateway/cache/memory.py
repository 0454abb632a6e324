"""The in-process answer store: an LRU bounded in bytes, with a TTL per entry."""

from __future__ import annotations

import time
from collections import OrderedDict

# Per-entry bookkeeping (the key string, the tuple, the dict slot), so many tiny answers cannot exceed the bound.
ENTRY_OVERHEAD = 200


class MemoryBackend:
    name = "memory"

    def __init__(self, max_bytes: int, max_entries: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries or 1 << 62
        self.size = 0
        self.evictions = 0
        self._entries: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get_now(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[2]

    async def get(self, key: str, model: str) -> bytes | None:
        return self.get_now(key)

    def set_now(self, key: str, model: str, value: bytes, ttl: float) -> None:
        cost = len(value) + len(key) + len(model) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + ttl, model, value)
        self.size += cost
        while self.size > self.max_bytes or len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    async def set(self, key: str, model: str, value: bytes, ttl: float) -> None:
        self.set_now(key, model, value, ttl)

    def _drop(self, key: str) -> None:
        _, model, value = self._entries.pop(key)
        self.size -= len(value) + len(key) + len(model) + ENTRY_OVERHEAD

    async def clear(self, model: str | None = None) -> int:
        doomed = [k for k, e in self._entries.items() if model is None or e[1] == model]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def close(self) -> None:
        self._entries.clear()
        self.size = 0
