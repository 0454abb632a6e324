"""A Redis client that finds the primary through Redis Sentinel and follows it when the sentinels fail over."""

from __future__ import annotations

import asyncio
import logging

from llm_gateway.redis_client import RedisUnavailable, RespClient, _Connection, pack

log = logging.getLogger("llm_gateway.redis")


def parse_node(node: str, default_port: int) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`, or a bare host) as a pair."""
    host, sep, port = node.rpartition(":")
    if not sep or host.endswith(":"):  # a bare host, or a bare IPv6 address
        return node.strip("[]"), default_port
    return host.strip("[]"), int(port)


class SentinelClient(RespClient):
    """Connects to the primary the sentinels name for `master_name`; the URL gives credentials, db and TLS.

    A new connection is made after any failure (the primary died, or answered READONLY after it was demoted),
    and each new connection asks the sentinels again, so calls reach the new primary once they promoted one.
    """

    def __init__(self, url: str, size: int, timeout: float, master_name: str, sentinels: list[str],
                 sentinel_password: str | None = None) -> None:
        super().__init__(url, size, timeout)
        self.master_name = master_name
        self.sentinels = [parse_node(node, 26379) for node in sentinels]
        self.sentinel_password = sentinel_password
        self._primary: tuple[str, int] | None = None

    async def _address(self) -> tuple[str, int]:
        errors: list[str] = []
        for i, (host, port) in enumerate(self.sentinels):
            try:
                reply = await asyncio.wait_for(self._ask(host, port), self.timeout)
            except (TimeoutError, OSError, RedisUnavailable) as exc:
                errors.append(f"{host}:{port}: {type(exc).__name__}")
                continue
            if not reply:
                errors.append(f"{host}:{port}: does not know {self.master_name!r}")
                continue
            primary = (reply[0].decode(), int(reply[1]))
            if i:  # the one that answered is asked first next time
                self.sentinels.insert(0, self.sentinels.pop(i))
            if primary != self._primary:
                log.warning("redis: sentinel %s:%d names %s:%d as the primary of %r", host, port, *primary,
                            self.master_name)
                self._primary = primary
            return primary
        raise RedisUnavailable(f"no sentinel named a primary for {self.master_name!r} ({'; '.join(errors)})")

    async def _ask(self, host: str, port: int) -> list[bytes] | None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(self.timeout), host, port)
        try:
            if self.sentinel_password is not None:
                await conn.call(pack(("AUTH", self.sentinel_password)))
            reply: list[bytes] | None = await conn.call(pack(("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                               self.master_name)))
            return reply
        finally:
            conn.close()

    async def _verify(self, conn: _Connection) -> None:
        # Sentinels may still name a primary that was demoted; only a node that says it is the primary is used.
        role = await conn.call(pack(("ROLE",)))
        if not role or role[0] != b"master":
            raise RedisUnavailable(f"the node the sentinels named for {self.master_name!r} is not a primary yet")
