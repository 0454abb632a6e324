"""Cooldowns: deployments that keep failing are taken out, probed by one request, and put back when it works.

State lives on each Deployment (so the hot-path check is one attribute read); with `redis.url` set, cooldowns
are shared between replicas through one Redis hash that each replica reads every `sync_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from llm_gateway.redis_topology import RedisClient, open_client
from llm_gateway.settings import CooldownConfig, RedisConfig

if TYPE_CHECKING:
    from llm_gateway.routing.catalog import Catalog, Deployment

log = logging.getLogger("llm_gateway.routing")

Clock = Callable[[], float]


class Cooldowns:
    """Health bookkeeping for deployments; `clock` is wall time (shared with other replicas through Redis)."""

    def __init__(self, config: CooldownConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.on_change: Callable[[Deployment], None] | None = None  # set by the Redis sync

    def usable(self, dep: Deployment) -> bool:
        """May a request go to `dep` now? (Cooling down: no. Cooldown over: yes unless a probe is under way.)"""
        if dep.cooldown_until:
            now = self.clock()
            if now < dep.cooldown_until:
                return False
            if dep.probing and now - dep.probe_at <= dep.cooldown_len:  # (unless that probe never came back)
                return False
        return dep.max_in_flight is None or dep.in_flight < dep.max_in_flight

    def begin(self, dep: Deployment) -> None:
        """An attempt starts; after a cooldown it is the probe."""
        if dep.cooldown_until:
            dep.probing = True
            dep.probe_at = self.clock()

    def success(self, dep: Deployment) -> None:
        if dep.fails_in_row or dep.cooldown_until:
            was_out = bool(dep.cooldown_until)
            dep.fails_in_row = 0
            dep.cooldown_until = 0.0
            dep.cooldown_len = 0.0
            dep.probing = False
            if was_out:
                log.info("deployment %s is back in rotation", dep.id)
                self._changed(dep)

    def failure(self, dep: Deployment) -> None:
        dep.failures += 1
        dep.fails_in_row += 1
        cfg = self.config
        if dep.probing:
            length = min(cfg.max_cooldown_s, max(dep.cooldown_len, cfg.cooldown_s) * 2)
        elif dep.fails_in_row >= cfg.failures and not dep.cooldown_until:
            length = cfg.cooldown_s
        else:
            return
        self.cool(dep, self.clock() + length, length)

    def cool(self, dep: Deployment, until: float, length: float, *, shared: bool = True) -> None:
        dep.cooldown_until = until
        dep.cooldown_len = length
        dep.probing = False
        log.warning("deployment %s cools down for %.1fs after %d failures in a row", dep.id, length,
                    dep.fails_in_row)
        if shared:
            self._changed(dep)

    def _changed(self, dep: Deployment) -> None:
        if self.on_change is not None:
            self.on_change(dep)

    def state(self, dep: Deployment) -> tuple[str, float]:
        """(healthy | cooling_down | probing, seconds of cooldown left)."""
        if not dep.cooldown_until:
            return "healthy", 0.0
        left = dep.cooldown_until - self.clock()
        if left > 0:
            return "cooling_down", left
        return ("probing" if dep.probing else "ready_to_probe"), 0.0


class RedisCooldownSync:
    """Shares cooldowns between replicas: a hash of deployment id -> cooldown end (epoch seconds)."""

    def __init__(self, cooldowns: Cooldowns, catalog: Catalog, redis: RedisClient, prefix: str,
                 interval: float) -> None:
        self.cooldowns = cooldowns
        self.catalog = catalog
        self.redis = redis
        self.key = f"{prefix}until"
        self.interval = interval
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._warned = False
        cooldowns.on_change = self._publish

    def _publish(self, dep: Deployment) -> None:
        task = asyncio.get_running_loop().create_task(self._write(dep.id, dep.cooldown_until, dep.cooldown_len))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, dep_id: str, until: float, length: float) -> None:
        try:
            if until:
                await self.redis.call("HSET", self.key, dep_id, f"{until}:{length}")
            else:
                await self.redis.call("HDEL", self.key, dep_id)
        except Exception as exc:  # Redis down: cooldowns stay local, routing goes on
            self._warn(exc)

    async def pull(self) -> None:
        """Adopt cooldowns other replicas started (and drop the expired entries)."""
        try:
            entries = await self.redis.call("HGETALL", self.key)  # [field, value, field, value, ...]
        except Exception as exc:
            self._warn(exc)
            return
        now = self.cooldowns.clock()
        stale = []
        for raw_id, raw in zip(entries[::2], entries[1::2], strict=True):
            dep_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            until_text, _, length_text = text.partition(":")
            until, length = float(until_text), float(length_text or 0)
            if until <= now - max(length, self.cooldowns.config.cooldown_s):
                stale.append(dep_id)
                continue
            dep = self.catalog.deployments.get(dep_id)
            if dep is not None and until > now and until > dep.cooldown_until:
                self.cooldowns.cool(dep, until, length, shared=False)
        if stale:
            try:
                await self.redis.call("HDEL", self.key, *stale)
            except Exception as exc:
                self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("shared cooldowns unavailable, keeping them in memory: %s", type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await self.pull()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> None:
        """Wait for the writes under way."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
        await self.flush()
        await self.redis.close()


def build_cooldown_sync(redis_url: str | None, cooldowns: Cooldowns, catalog: Catalog,
                        config: CooldownConfig, redis: RedisConfig | None = None) -> RedisCooldownSync | None:
    """Shared cooldowns when Redis is configured; None keeps them in this process."""
    if not redis_url:
        return None
    client = open_client(redis_url, 1, 0.5, redis)
    return RedisCooldownSync(cooldowns, catalog, client, config.redis_prefix, config.sync_interval_s)
