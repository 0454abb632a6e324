"""The semantic cache with the real local embedding model (all-MiniLM-L6-v2, ONNX): paraphrases hit, other
questions miss, and answers stay within their key."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import psycopg
import pytest
import redis
from tests.conftest import GatewayProcess, upstream_args
from tests.upstream import Upstream

Factory = Callable[..., GatewayProcess]


def chat(gw: GatewayProcess, text: str, key: str = "sk-client-key", **kw: Any) -> tuple[str, str, Any]:
    c = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": text}], **kw)
    return raw.headers.get("x-cache", ""), raw.headers.get("x-cache-similarity", ""), raw.parse()


def test_paraphrase_hits_and_unrelated_prompt_misses(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = gateway_factory(upstream_args(upstream), config={"cache": {"enabled": True, "semantic": {
        "enabled": True, "embedding": "local", "threshold": 0.85}}})
    tag = uuid.uuid4().hex[:6]  # a fresh partition per run: the system prompt differs
    system = {"role": "system", "content": f"run {tag}"}

    def ask(text: str, **kw: Any) -> tuple[str, str, Any]:
        c = openai.OpenAI(base_url=gw.v1, api_key="sk-client-key", max_retries=0)
        raw = c.chat.completions.with_raw_response.create(
            model="m", messages=[system, {"role": "user", "content": text}], **kw)
        return raw.headers.get("x-cache", ""), raw.headers.get("x-cache-similarity", ""), raw.parse()

    before = len(upstream.requests)
    assert ask("What is the capital of France?")[0] == "MISS"
    status, similarity, out = ask("Tell me the capital city of France")
    assert status == "HIT-SEMANTIC"
    assert 0.85 <= float(similarity) < 1.0
    assert out.choices[0].message.content == "The quick brown fox jumps"
    assert ask("Tell me the capital city of France")[0] == "HIT"  # kept under its own wording too
    streamed = openai.OpenAI(base_url=gw.v1, api_key="sk-client-key", max_retries=0).chat.completions.create(
        model="m", messages=[system, {"role": "user", "content": "what's the capital of france"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "The quick brown fox jumps"
    assert len(upstream.requests) == before + 1
    status, similarity, _ = ask("How do I bake sourdough bread at home?")
    assert status == "MISS" and similarity == ""
    assert ask("What is the capital of France?", temperature=0.3)[0] == "MISS"  # other parameters: no match
    assert len(upstream.requests) == before + 3


def test_answers_do_not_cross_keys(gateway_factory: Factory, upstream: Upstream) -> None:
    gw = gateway_factory(upstream_args(upstream), config={"cache": {"enabled": True, "scope": "key", "semantic": {
        "enabled": True, "scope": "key", "threshold": 0.85}}, "auth": {"master_key": "sk-master-sem"}})
    tag = uuid.uuid4().hex[:6]
    keys = []
    for _ in range(2):
        r = httpx.post(f"{gw.url}/api/v1/keys", json={"alias": f"k-{uuid.uuid4().hex[:6]}"},
                       headers={"authorization": "Bearer sk-master-sem"})
        assert r.status_code in (200, 201), r.text
        keys.append(r.json()["key"])
    assert chat(gw, f"{tag}: What is the capital of France?", keys[0])[0] == "MISS"
    assert chat(gw, f"{tag}: Tell me the capital city of France", keys[0])[0] == "HIT-SEMANTIC"
    # The other key finds neither the exact answer nor a paraphrase of it: it has its own partition.
    assert chat(gw, f"{tag}: What is the capital of France?", keys[1])[0] == "MISS"
    assert chat(gw, f"{tag}: Tell me the capital city of France", keys[1])[0] == "HIT-SEMANTIC"
    assert chat(gw, f"{tag}: Where do I find good pizza in Naples?", keys[1])[0] == "MISS"
    assert chat(gw, f"{tag}: Where do I find good pizza in Naples?", keys[0])[0] == "MISS"


@pytest.fixture(scope="module")
def pgvector_url() -> Iterator[str]:
    """PostgreSQL 16 with pgvector from the `pgserver` package, on a unix socket of its own."""
    pgserver = pytest.importorskip("pgserver")
    # Not under pytest's tmp dir: as root, pgserver runs postgres as another user, who cannot enter that one.
    data = tempfile.mkdtemp(prefix="llmgw-pgvector-")
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def test_pgvector_and_redis_share_semantic_answers_across_gateways(
        gateway_factory: Factory, upstream: Upstream, pgvector_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = f"llmgw-test-sem-{tag}:"
    config: dict[str, Any] = {"cache": {"enabled": True, "backend": "redis", "redis_prefix": prefix, "semantic": {
        "enabled": True, "threshold": 0.85, "scope": "global", "backend": "pgvector", "pg_url": pgvector_url,
        "pg_table": f"sem_{tag}"}}, "redis": {"url": "redis://127.0.0.1:6379/9"}}
    one = gateway_factory(upstream_args(upstream), config=config)
    two = gateway_factory(upstream_args(upstream), config=config)
    store = redis.Redis.from_url("redis://127.0.0.1:6379/9")
    try:
        assert chat(one, f"{tag}: How do I reverse a list in Python?")[0] == "MISS"
        with psycopg.connect(pgvector_url) as db:  # the vector is written just after the answer was sent
            deadline = time.monotonic() + 5
            while db.execute(f"SELECT count(*) FROM sem_{tag}").fetchone() != (1,):
                assert time.monotonic() < deadline
                time.sleep(0.01)
        status, similarity, _ = chat(two, f"{tag}: In Python, how can I reverse a list?")
        assert status == "HIT-SEMANTIC" and float(similarity) > 0.9
        assert chat(two, f"{tag}: How do I sort a list in Python?")[0] == "MISS"
        r = httpx.post(f"{one.url}/api/v1/cache/clear")
        assert r.status_code == 200
        assert chat(two, f"{tag}: In Python, how do I reverse a list?")[0] == "MISS"
    finally:
        for name in store.scan_iter(match=f"{prefix}*"):
            store.delete(name)
        store.close()


def test_embeddings_through_the_gateways_own_provider(gateway_factory: Factory, upstream: Upstream) -> None:
    # The test upstream gives every text the same vector: any second prompt is a (perfect) semantic match.
    gw = gateway_factory(upstream_args(upstream), config={"cache": {"enabled": True, "semantic": {
        "enabled": True, "embedding": "text-embedding-3-small"}}})
    tag = uuid.uuid4().hex[:8]
    assert chat(gw, f"{tag} one")[0] == "MISS"
    embedded = [r for r in upstream.requests if r.path == "/v1/embeddings" and tag in str(r.body)]
    assert embedded and embedded[-1].body["model"] == "text-embedding-3-small"
    status, similarity, _ = chat(gw, f"{tag} something else entirely")
    assert status == "HIT-SEMANTIC" and similarity == "1.0000"
