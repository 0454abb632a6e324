"""The in-memory answer store: LRU order, the byte bound, TTL, clearing by model."""

from __future__ import annotations

import time

from llm_gateway.cache.memory import ENTRY_OVERHEAD, MemoryBackend


async def test_lru_bound_in_bytes() -> None:
    entry = 100 + 32 + 1 + ENTRY_OVERHEAD
    store = MemoryBackend(max_bytes=entry * 3)
    for i in range(3):
        await store.set(f"{i:032d}", "m", b"x" * 100, 60)
    assert await store.get(f"{0:032d}", "m") is not None  # now the most recently used
    await store.set(f"{3:032d}", "m", b"x" * 100, 60)
    assert await store.get(f"{1:032d}", "m") is None  # the least recently used went
    assert await store.get(f"{0:032d}", "m") is not None
    assert len(store) == 3 and store.size == entry * 3 and store.evictions == 1
    await store.set("big", "m", b"x" * entry * 4, 60)  # larger than the whole cache: not stored
    assert await store.get("big", "m") is None and len(store) == 3


async def test_ttl_and_replace() -> None:
    store = MemoryBackend(max_bytes=10_000)
    await store.set("k", "m", b"old", 60)
    await store.set("k", "m", b"new", 0.05)
    assert await store.get("k", "m") == b"new" and len(store) == 1
    time.sleep(0.06)
    assert await store.get("k", "m") is None
    assert store.size == 0


async def test_clear_by_model() -> None:
    store = MemoryBackend(max_bytes=10_000)
    await store.set("a", "m1", b"1", 60)
    await store.set("b", "m2", b"2", 60)
    assert await store.clear("m1") == 1
    assert await store.get("a", "m1") is None and await store.get("b", "m2") == b"2"
    assert await store.clear() == 1 and store.size == 0
