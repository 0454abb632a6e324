"""A Redis Cluster client: each command goes to the primary that serves its key's hash slot.

The slot map comes from CLUSTER SLOTS and is read again after a MOVED reply or a failure (a failover moves slots
to a promoted replica). Commands whose keys span slots are the caller's to split: `slot_of` groups them, and the
gateway's scripts take keys of one hash tag per call (`limits`, `keys.shared_budget`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llm_gateway.redis_client import Arg, RedisReplyError, RedisUnavailable, RespClient
from llm_gateway.redis_sentinel import parse_node

log = logging.getLogger("llm_gateway.redis")

SLOTS = 16384
_SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
# Sent to every primary: script caches are per node.
_EVERY_PRIMARY = frozenset({"SCRIPT"})


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def slot_of(key: Arg) -> int:
    """The key's hash slot: CRC16 (XMODEM) of the key, or of its hash tag `{...}` when it has a non-empty one."""
    data = key if isinstance(key, bytes) else str(key).encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc % SLOTS


def command_key(args: tuple[Arg, ...]) -> Arg | None:
    """The (first) key a command names, which decides its slot; None for a command of no key."""
    name = (args[0].decode() if isinstance(args[0], bytes) else str(args[0])).upper()
    if name in _SCRIPT_COMMANDS:
        return args[3] if int(args[2]) > 0 else None
    if name in _EVERY_PRIMARY or len(args) < 2:
        return None
    return args[1]


class ClusterClient:
    """`size` connections to each primary of the cluster that `url` (and `seeds`) belong to."""

    def __init__(self, url: str, size: int, timeout: float, seeds: list[str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}: use redis:// or rediss://")
        self._parts = parts
        self.size = size
        self.timeout = timeout
        first = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.seeds = [first, *(parse_node(node, 6379) for node in seeds or ())]
        self._nodes: dict[tuple[str, int], RespClient] = {}
        self._slots: list[RespClient | None] = [None] * SLOTS
        self._stale = True
        self._refreshing: asyncio.Future[None] | None = None

    def _node(self, address: tuple[str, int]) -> RespClient:
        node = self._nodes.get(address)
        if node is None:
            host, port = address
            netloc = self._parts.netloc.rpartition("@")[0]
            netloc = f"{netloc}@{host}:{port}" if netloc else f"{host}:{port}"
            if ":" in host:
                netloc = netloc.replace(f"{host}:{port}", f"[{host}]:{port}")
            url = urlunsplit((self._parts.scheme, netloc, "/0", "", ""))
            node = self._nodes[address] = RespClient(url, self.size, self.timeout)
        return node

    async def refresh(self) -> None:
        """Read the slot map again, once however many callers ask at the same time."""
        if self._refreshing is not None:
            return await asyncio.shield(self._refreshing)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refreshing = fut
        try:
            await self._read_slots()
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            self._refreshing = None

    async def _read_slots(self) -> None:
        errors: list[str] = []
        known = [*(a for a, n in self._nodes.items() if n.live()), *self.seeds, *self._nodes]
        for address in dict.fromkeys(known):
            try:
                ranges = await self._node(address).call("CLUSTER", "SLOTS")
            except (TimeoutError, OSError, RedisReplyError) as exc:
                errors.append(f"{address[0]}:{address[1]}: {type(exc).__name__}")
                continue
            slots: list[RespClient | None] = [None] * SLOTS
            for first, last, primary, *_ in ranges:
                host = primary[0].decode() or address[0]  # an empty host: the node asked
                node = self._node((host, int(primary[1])))
                for slot in range(int(first), int(last) + 1):
                    slots[slot] = node
            self._slots = slots
            self._stale = False
            return
        raise RedisUnavailable(f"no cluster node answered CLUSTER SLOTS ({'; '.join(errors)})")

    def primaries(self) -> list[RespClient]:
        return list(dict.fromkeys(n for n in self._slots if n is not None))

    async def call(self, *args: Arg) -> Any:
        key = command_key(args)
        if key is None:
            return await self._everywhere(args)
        return await self.call_in_slot(slot_of(key), *args)

    async def call_in_slot(self, slot: int, *args: Arg) -> Any:
        if self._stale:
            await self.refresh()
        node = self._slots[slot]
        if node is None:
            self._stale = True
            raise RedisUnavailable(f"no primary serves slot {slot}")
        try:
            return await node.call(*args)
        except RedisReplyError as exc:
            text = str(exc)
            if text.startswith("MOVED "):  # the command did not run: send it where the slot lives now
                self._stale = True
                return await self._node(parse_node(text.split()[2], 6379)).call(*args)
            if text.startswith(("ASK ", "TRYAGAIN", "CLUSTERDOWN")):  # a slot in migration, or a failover
                self._stale = True
                raise RedisUnavailable(text) from None
            raise
        except RedisUnavailable:
            self._stale = True
            raise

    def call_nowait(self, *args: Arg) -> asyncio.Future[Any] | None:
        """As RespClient.call_nowait, on the slot's primary; None when the map must be read first."""
        key = command_key(args)
        if self._stale or key is None:
            return None
        node = self._slots[slot_of(key)]
        return None if node is None else node.call_nowait(*args)

    async def _everywhere(self, args: tuple[Arg, ...]) -> Any:
        if self._stale:
            await self.refresh()
        replies = await asyncio.gather(*(node.call(*args) for node in self.primaries()))
        return replies[0] if replies else None

    async def close(self) -> None:
        for node in self._nodes.values():
            await node.close()
