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
from tests.conftest import GatewayProcess, metric_value, upstream_args
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
    # the prompt's text is read from whatever shape the messages have (the upstream judges them), never a 500
    for messages in (5, [{"role": "user", "content": [{"type": "text", "text": 5}]}],
                     [{"role": "system", "content": [{"type": "text", "text": None}]},
                      {"role": "user", "content": tag}]):
        r = httpx.post(f"{gw.v1}/chat/completions", json={"model": "m", "messages": messages})
        assert r.status_code < 500, (messages, r.text)
    assert "Traceback" not in gw.log()


def test_the_embedding_a_provider_makes_for_the_semantic_cache_is_charged(gateway_factory: Factory,
                                                                          upstream: Upstream) -> None:
    """With `embedding: <a served model>` each lookup is a paid provider call: the request it was made for is
    charged for it (a hit costs the embedding only), so the ledger, the budget and the metrics see that spend."""
    master = "sk-master-sem-cost"
    priced = {"input": 1000.0, "output": 2000.0}  # USD per 1M
    gw = gateway_factory([], config={
        "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                       "models": ["*"]}],
        "pricing": {"models": {"sem-chat": priced, "sem-embed": {"input": 500.0, "output": 0.0}}},
        "cache": {"enabled": True, "semantic": {"enabled": True, "embedding": "sem-embed", "threshold": 0.85}},
        "auth": {"master_key": master}, "database": {"ledger_flush_interval_s": 0.05}})
    admin = {"authorization": f"Bearer {master}"}
    key = httpx.post(f"{gw.url}/api/v1/keys", json={"budget_usd": 1.0}, headers=admin).json()
    c = openai.OpenAI(base_url=gw.v1, api_key=key["key"], max_retries=0)
    tag = uuid.uuid4().hex[:6]
    statuses = []
    for text in (f"{tag} What is the capital of France?", f"{tag} Tell me the capital city of France"):
        raw = c.chat.completions.with_raw_response.create(model="sem-chat",
                                                          messages=[{"role": "user", "content": text}])
        statuses.append(raw.headers["x-cache"])
    assert statuses == ["MISS", "HIT-SEMANTIC"]  # the test upstream embeds every text alike
    embedding = 4 * 500e-6  # the test upstream's embeddings: 4 prompt tokens an input
    chat_call = 11 * 1000e-6 + 5 * 2000e-6
    deadline = time.monotonic() + 10
    while True:
        totals = httpx.get(f"{gw.url}/api/v1/usage", params={"model": "sem-chat"}, headers=admin).json()["totals"]
        if totals["total_requests"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert totals["total_requests"] == 2
    assert totals["total_cost"] == pytest.approx(chat_call + 2 * embedding)
    spend = httpx.get(f"{gw.url}/api/v1/spend", params={"kind": "key"}, headers=admin).json()["data"]
    assert spend[0]["spent_usd"] == pytest.approx(chat_call + 2 * embedding)
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_cost_total") == pytest.approx(chat_call + 2 * embedding)
