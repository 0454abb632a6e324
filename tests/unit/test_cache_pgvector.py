"""The pgvector index against PostgreSQL 16 + pgvector from `pgserver`: nearest neighbour, clearing, pruning."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from llm_gateway.cache.pgvector import PRUNE_EVERY, PgVectorIndex, pg_url


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    pgserver = pytest.importorskip("pgserver")
    data = tempfile.mkdtemp(prefix="llmgw-pgvector-")  # pgserver's postgres user must be able to enter it
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


async def test_search_clear_and_prune(url: str) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    index = PgVectorIndex(url, table, max_age_s=3600)
    try:
        assert await index.search("p", unit(1, 0, 0)) is None  # creates the table
        await index.add("p", unit(1, 0, 0), "k1", "m1")
        await index.add("p", unit(0, 1, 0), "k2", "m2")
        await index.add("q", unit(1, 0, 0), "k3", "m1")
        found = await index.search("p", unit(1, 0.2, 0))
        assert found is not None and found[:2] == ("k1", "m1") and found[2] == pytest.approx(0.9806, abs=1e-3)
        await index.clear("m1")
        found = await index.search("p", unit(1, 0.2, 0))
        assert found is not None and found[:2] == ("k2", "m2")
        assert await index.search("q", unit(1, 0, 0)) is None
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"UPDATE {table} SET created_at = now() - interval '2 hours'")
        index._inserts = PRUNE_EVERY  # the next insert prunes rows older than the longest TTL
        await index.add("p", unit(0, 0, 1), "k4", "m1")
        with psycopg.connect(url) as db:
            assert db.execute(f"SELECT key FROM {table}").fetchall() == [("k4",)]
    finally:
        await index.close()


async def test_outage_reads_as_a_miss() -> None:
    index = PgVectorIndex("postgresql://nobody@127.0.0.1:1/none", "t")
    assert await index.search("p", unit(1, 0)) is None
    await index.add("p", unit(1, 0), "k", "m")  # no exception
    await index.close()


def test_url_and_names() -> None:
    assert pg_url("postgresql+psycopg://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ValueError):
        PgVectorIndex("sqlite:///x.db", "t")
    with pytest.raises(ValueError):
        PgVectorIndex("postgresql://h/db", "bad name; drop")
