"""Semantic cache vectors in PostgreSQL with pgvector, shared by every replica (one table, one row per answer)."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import numpy as np
import psycopg

log = logging.getLogger("llm_gateway.cache")

PRUNE_EVERY = 200  # inserts between two deletions of expired rows
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def pg_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (`postgresql+psycopg://` → `postgresql://`)."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


class PgVectorIndex:
    """Nearest neighbour by cosine distance (`<=>`) within a partition. A database outage reads as a miss."""

    def __init__(self, url: str, table: str, max_age_s: float = 86400.0) -> None:
        if not url.startswith(("postgres://", "postgresql://", "postgresql+", "postgres+")):
            raise ValueError("cache.semantic.pg_url must be a postgresql:// URL (pgvector backend)")
        if not _TABLE.match(table):
            raise ValueError("cache.semantic.pg_table must be a plain SQL identifier")
        self.url = pg_url(url)
        self.table = table
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()
        self._quiet_until = 0.0
        self.max_age_s = max_age_s  # rows older than the longest TTL point at answers that are gone
        self._inserts = 0

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (id bigserial PRIMARY KEY, part text NOT NULL, "
                "key text NOT NULL, model text NOT NULL, embedding vector NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (part, key, model))")
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_part ON {self.table} (part)")
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_model ON {self.table} (model)")
            self._conn = conn
        return self._conn

    def _failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + 60
            log.warning("cache: pgvector %s failed (%s); semantic cache skipped", what, type(exc).__name__)
        self._conn = None

    async def search(self, partition: str, vector: np.ndarray) -> tuple[str, str, float] | None:
        try:
            async with self._lock:
                conn = await self._connection()
                cur = await conn.execute(
                    f"SELECT key, model, 1 - (embedding <=> %s::vector) FROM {self.table} WHERE part = %s "
                    "ORDER BY embedding <=> %s::vector LIMIT 1", (literal(vector), partition, literal(vector)))
                row = await cur.fetchone()
        except (psycopg.Error, OSError) as exc:
            self._failed("search", exc)
            return None
        if row is None:
            return None
        return str(row[0]), str(row[1]), float(row[2])  # type: ignore[arg-type]

    async def add(self, partition: str, vector: np.ndarray, key: str, model: str) -> None:
        try:
            async with self._lock:
                conn = await self._connection()
                await conn.execute(
                    f"INSERT INTO {self.table} (part, key, model, embedding) VALUES (%s, %s, %s, %s::vector) "
                    "ON CONFLICT (part, key, model) DO UPDATE SET embedding = EXCLUDED.embedding, "
                    "created_at = now()", (partition, key, model, literal(vector)))
                self._inserts += 1
                if self._inserts % PRUNE_EVERY == 1:
                    await conn.execute(f"DELETE FROM {self.table} WHERE created_at < now() - make_interval("
                                       "secs => %s)", (self.max_age_s,))
        except (psycopg.Error, OSError) as exc:
            self._failed("insert", exc)

    async def clear(self, model: str | None) -> None:
        try:
            async with self._lock:
                conn = await self._connection()
                if model is None:
                    await conn.execute(f"DELETE FROM {self.table}")
                else:
                    await conn.execute(f"DELETE FROM {self.table} WHERE model = %s", (model,))
        except (psycopg.Error, OSError) as exc:
            self._failed("clear", exc)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
