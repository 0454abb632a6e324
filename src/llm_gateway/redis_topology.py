"""Which Redis client a configuration asks for: one node, a Sentinel-watched primary, or a Cluster."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from llm_gateway.redis_client import Arg, RespClient
from llm_gateway.redis_cluster import ClusterClient
from llm_gateway.redis_sentinel import SentinelClient
from llm_gateway.settings import RedisConfig


class RedisClient(Protocol):
    async def call(self, *args: Arg) -> Any: ...

    def call_nowait(self, *args: Arg) -> asyncio.Future[Any] | None: ...

    async def close(self) -> None: ...


def open_client(url: str, size: int, timeout: float, redis: RedisConfig | None = None) -> RespClient | ClusterClient:
    """A client for `url`, or for the Sentinel or Cluster setup of `redis` (the URL then gives credentials, db
    and TLS; under Cluster it is also the first node asked for the slot map)."""
    if redis is not None and redis.sentinel is not None:
        sentinel = redis.sentinel
        return SentinelClient(url, size, timeout, sentinel.master_name, sentinel.nodes, sentinel.password)
    if redis is not None and redis.cluster:
        return ClusterClient(url, size, timeout, redis.nodes)
    return RespClient(url, size, timeout)
