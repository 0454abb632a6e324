"""The in-memory vector index: nearest neighbour by cosine, ring bound per partition, clearing by model."""

from __future__ import annotations

import numpy as np

from llm_gateway.cache.semantic import MemoryIndex, prompt_text


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


async def test_nearest_within_partition() -> None:
    index = MemoryIndex(max_entries=100)
    await index.add("p", unit(1, 0, 0), "k1", "m")
    await index.add("p", unit(0, 1, 0), "k2", "m")
    await index.add("q", unit(1, 0.1, 0), "k3", "m")
    found = await index.search("p", unit(1, 0.2, 0))
    assert found is not None and found[:2] == ("k1", "m") and 0.97 < found[2] < 0.99
    assert await index.search("other", unit(1, 0, 0)) is None


async def test_ring_bound_and_clear() -> None:
    index = MemoryIndex(max_entries=20)
    for i in range(50):
        await index.add("p", unit(1, i, 0), f"k{i}", "m1" if i % 2 else "m2")
    bucket = index.buckets["p"]
    assert bucket.count == 20 and len(bucket.refs) == 20
    assert {ref[0] for ref in bucket.refs} == {f"k{i}" for i in range(30, 50)}  # the newest stay
    await index.clear("m1")
    assert {ref[1] for ref in index.buckets["p"].refs} == {"m2"} and index.buckets["p"].count == 10
    await index.clear(None)
    assert await index.search("p", unit(1, 0, 0)) is None


def test_prompt_text() -> None:
    body = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]}]}
    assert prompt_text(body, 100) == "system: Be brief.\nuser: Hi"
    assert prompt_text(body, 8) == "\nuser: Hi"[-8:]
