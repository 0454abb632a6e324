"""The shared answer store: Redis, one string per answer with its TTL, named so that a model's answers can be found."""

from __future__ import annotations

import logging
import re
import time

from llm_gateway.errors import ServiceUnavailable
from llm_gateway.redis_client import RedisReplyError, RedisUnavailable, RespClient

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

    def __init__(self, url: str, prefix: str, timeout: float, pool_size: int) -> None:
        self.prefix = prefix
        self.client = RespClient(url, max(pool_size, 1), timeout)  # pipelined: a few connections carry everything
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
        batch: list[bytes] = []
        cursor: bytes = b"0"
        try:
            while True:
                cursor, names = await self.client.call("SCAN", cursor, "MATCH", pattern, "COUNT", CLEAR_BATCH)
                batch.extend(names)
                if len(batch) >= CLEAR_BATCH:
                    removed += int(await self.client.call("UNLINK", *batch))
                    batch = []
                if cursor == b"0":
                    break
            if batch:
                removed += int(await self.client.call("UNLINK", *batch))
        except (RedisUnavailable, RedisReplyError) as exc:
            raise ServiceUnavailable(f"the cache's Redis is unavailable ({type(exc).__name__}); nothing or only "
                                     f"part was cleared ({removed} answers)") from None
        return removed

    async def close(self) -> None:
        await self.client.close()
