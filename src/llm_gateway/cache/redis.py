"""The shared answer store: Redis, one string per answer with its TTL, named so that a model's answers can be found."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from llm_gateway.errors import ServiceUnavailable
from llm_gateway.redis_client import RedisReplyError, RedisUnavailable, RespClient
from llm_gateway.redis_cluster import ClusterClient
from llm_gateway.redis_topology import open_client
from llm_gateway.settings import RedisConfig

log = logging.getLogger("llm_gateway.cache")

_GLOB = re.compile(r"([*?\[\]\\])")
KEY_HEX = 32  # keys.digest() length
SKIP_AFTER_FAILURE_S = 1.0
CLEAR_BATCH = 500


def _glob_escape(text: str) -> str:
    return _GLOB.sub(r"\\\1", text)


class RedisBackend:
    """Answers at `{prefix}{key}:{model}`. A Redis outage reads as a miss: the cache never fails a request."""

    name = "redis"

    def __init__(self, url: str, prefix: str, timeout: float, pool_size: int, redis: RedisConfig | None = None) -> None:
        self.prefix = prefix
        # pipelined: a few connections carry everything
        self.client = open_client(url, max(pool_size, 1), timeout, redis)
        self._quiet_until = 0.0
        self._down_until = 0.0  # after a failure Redis is skipped briefly: no request waits on a dead server

    def _up(self) -> bool:
        return self._down_until == 0.0 or time.monotonic() >= self._down_until

    def _name(self, key: str, model: str) -> str:
        return f"{self.prefix}{key}:{model}"

    def _failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + SKIP_AFTER_FAILURE_S
        if now >= self._quiet_until:  # one line a minute, not one per request, while Redis is down
            self._quiet_until = now + 60
            log.warning("cache: redis %s failed (%s); serving without the cache", what, type(exc).__name__)

    async def get(self, key: str, model: str) -> bytes | None:
        if not self._up():
            return None
        try:
            value = await self.client.call("GET", self._name(key, model))
        except (RedisUnavailable, RedisReplyError) as exc:
            self._failed("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, model: str, value: bytes, ttl: float) -> None:
        if not self._up():
            return
        try:
            await self.client.call("SET", self._name(key, model), value, "PX", max(int(ttl * 1000), 1))
        except (RedisUnavailable, RedisReplyError) as exc:
            self._failed("set", exc)

    async def clear(self, model: str | None = None) -> int:
        pattern = _glob_escape(self.prefix) + ("*" if model is None else "?" * KEY_HEX + ":" + _glob_escape(model))
        removed = 0
        try:
            if isinstance(self.client, ClusterClient):  # SCAN walks one node: walk each primary
                await self.client.refresh()
                for node in self.client.primaries():
                    removed += await self._clear_node(node, pattern, True)
            else:
                removed = await self._clear_node(self.client, pattern, False)
        except (RedisUnavailable, RedisReplyError) as exc:
            raise ServiceUnavailable(f"the cache's Redis is unavailable ({type(exc).__name__}); nothing or only "
                                     f"part was cleared ({removed} answers)") from None
        return removed

    @staticmethod
    async def _clear_node(client: RespClient, pattern: str, by_key: bool) -> int:
        """UNLINK what SCAN finds; on a Cluster node one key per call (a batch would span slots)."""
        removed = 0
        batch: list[bytes] = []
        cursor: bytes = b"0"
        while True:
            cursor, names = await client.call("SCAN", cursor, "MATCH", pattern, "COUNT", CLEAR_BATCH)
            batch.extend(names)
            if len(batch) >= CLEAR_BATCH or (batch and cursor == b"0"):
                if by_key:
                    removed += sum(int(n) for n in await asyncio.gather(*(client.call("UNLINK", k) for k in batch)))
                else:
                    removed += int(await client.call("UNLINK", *batch))
                batch = []
            if cursor == b"0":
                return removed

    async def close(self) -> None:
        await self.client.close()
