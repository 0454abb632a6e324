"""The in-memory key cache: key checks are dict lookups, refreshed from the database in the background.

Every key is loaded at start. An entry older than the TTL is still served while a background task re-reads it
(batched, one query for many keys), so a database outage never turns valid cached keys into 401s. Admin changes
on this replica update the cache at once; other replicas see them within the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import select

from llm_gateway.db.tables import keys
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.keys.model import KeyRecord
from llm_gateway.keys.store import Store, key_from_row

log = logging.getLogger("llm_gateway.keys")

MISSING = object()
_BATCH = 500
_MAX_NEGATIVE = 100_000


class KeyCache:
    def __init__(self, store: Store, ttl: float = 10.0, preload_limit: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self.preload_limit = preload_limit
        self.clock = clock
        self._entries: dict[str, tuple[KeyRecord | None, float]] = {}
        self._negative = 0
        self._stale: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.on_change: list[Callable[[KeyRecord], None]] = []

    # -- the hot path
    def get(self, key_hash: str) -> KeyRecord | object | None:
        """The cached record, None for a known-bad key, or MISSING; stale entries are served and re-read."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return MISSING
        if self.clock() - entry[1] > self.ttl and key_hash not in self._stale:
            self._stale.add(key_hash)
            self._wake.set()
        return entry[0]

    async def fetch(self, key_hash: str) -> KeyRecord | None:
        """A key not in the cache (created on another replica, or bad): one database read, then cached."""
        try:
            record = await asyncio.wait_for(asyncio.to_thread(self.store.key_by_hash, key_hash), 5.0)
        except Exception as exc:
            log.warning("key store unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable("the key store is unavailable; try again shortly") from None
        self._put(key_hash, record)
        return record

    # -- changes
    def put(self, record: KeyRecord) -> None:
        self._put(record.key_hash, record)

    def evict(self, key_hash: str) -> None:
        """Forget a key (deleted or rotated away): the next use is a 401, not a stale hit."""
        self._put(key_hash, None)

    def _put(self, key_hash: str, record: KeyRecord | None) -> None:
        if record is None:
            if self._negative >= _MAX_NEGATIVE:
                self._drop_negatives()
            self._negative += 1
        self._entries[key_hash] = (record, self.clock())
        if record is not None:
            for callback in self.on_change:
                callback(record)

    def _drop_negatives(self) -> None:
        self._entries = {h: e for h, e in self._entries.items() if e[0] is not None}
        self._negative = 0

    def __len__(self) -> int:
        return len(self._entries)

    # -- background
    async def start(self) -> None:
        records = await asyncio.to_thread(self.store.all_keys, self.preload_limit)
        for record in records:
            self._put(record.key_hash, record)
        log.info("key cache: %d key(s) loaded", len(records))
        self._task = asyncio.create_task(self._refresh_loop(), name="key-cache-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _refresh_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.05)  # coalesce a burst of stale hits into one query
            while self._stale:
                batch = [self._stale.pop() for _ in range(min(_BATCH, len(self._stale)))]
                try:
                    found = await asyncio.to_thread(self._read, batch)
                except Exception as exc:
                    # Keep serving what we have; try again after a pause.
                    log.warning("key cache refresh failed (%s); serving cached keys", type(exc).__name__)
                    await asyncio.sleep(min(self.ttl, 2.0))
                    self._stale.update(batch)
                    continue
                for key_hash in batch:
                    self._put(key_hash, found.get(key_hash))

    def _read(self, hashes: list[str]) -> dict[str, KeyRecord]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(keys).where(keys.c.key_hash.in_(hashes)))
            return {r.key_hash: key_from_row(r) for r in rows}
