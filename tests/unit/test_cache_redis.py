"""The Redis answer store against the real Redis (db 9, a prefix of its own), and its behaviour when Redis fails."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from tests.upstream import free_port

from llm_gateway.cache.redis import RedisBackend
from llm_gateway.errors import ServiceUnavailable


async def test_set_get_ttl_and_clear_by_model() -> None:
    prefix = f"llmgw-unit-cache-{uuid.uuid4().hex[:8]}:"
    store = RedisBackend("redis://127.0.0.1:6379/9", prefix, 1.0, 2)
    try:
        key1, key2 = "a" * 32, "b" * 32
        await store.set(key1, "gpt*[x]", b"one", 60)  # glob characters in a model name are matched literally
        await store.set(key2, "gpt", b"two", 60)
        await store.set("c" * 32, "gpt", b"short", 0.05)
        assert await store.get(key1, "gpt*[x]") == b"one" and await store.get(key2, "gpt") == b"two"
        await asyncio.sleep(0.1)
        assert await store.get("c" * 32, "gpt") is None
        assert await store.clear("gpt") == 1
        assert await store.get(key2, "gpt") is None and await store.get(key1, "gpt*[x]") == b"one"
        assert await store.clear() == 1
    finally:
        await store.clear()
        await store.close()


async def test_clear_walks_every_scan_page_and_removes_in_batches() -> None:
    prefix = f"llmgw-unit-cache-{uuid.uuid4().hex[:8]}:"
    store = RedisBackend("redis://127.0.0.1:6379/9", prefix, 2.0, 2)
    try:
        await asyncio.gather(*(store.set(f"{i:032x}", "m", b"v", 60) for i in range(1234)))
        await store.set("f" * 32, "other", b"kept", 60)
        assert await store.clear("m") == 1234
        assert await store.get(f"{7:032x}", "m") is None and await store.get("f" * 32, "other") == b"kept"
    finally:
        await store.clear()
        await store.close()


async def test_a_dead_redis_reads_as_a_miss_and_is_skipped_for_a_while() -> None:
    store = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "p:", 0.2, 1)
    started = time.perf_counter()
    assert await store.get("a" * 32, "m") is None
    await store.set("a" * 32, "m", b"x", 60)
    for _ in range(100):
        assert await store.get("a" * 32, "m") is None
    assert time.perf_counter() - started < 0.5
    with pytest.raises(ServiceUnavailable):
        await store.clear()
    await store.close()
