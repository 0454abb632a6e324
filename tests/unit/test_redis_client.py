"""The gateway's Redis client: pipelining, NOSCRIPT fallback, deadlines, reconnection, URLs."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from llm_gateway.limits.redis import _Script
from llm_gateway.redis_client import RedisReplyError, RedisUnavailable, RespClient

REDIS_URL = "redis://127.0.0.1:6379/14"


async def test_pipelined_calls_get_their_own_replies_and_db_is_selected() -> None:
    client = RespClient(REDIS_URL, 2, 2.0)
    key = f"test-resp-{uuid.uuid4().hex[:8]}"
    try:
        replies = await asyncio.gather(*(client.call("INCRBY", key, i) for i in range(1, 101)))
        assert len(set(replies)) == 100  # each caller got the answer to its own command
        assert max(replies) == 5050 and await client.call("GET", key) == b"5050"
        info = (await client.call("CLIENT", "INFO")).decode()
        assert " db=14 " in info
        with pytest.raises(RedisReplyError, match=r"^WRONGTYPE"):
            await client.call("HSET", key, "f", 1)
        assert await client.call("DEL", key) == 1  # the connection survived the error reply
    finally:
        await client.close()


async def test_unknown_script_falls_back_to_eval() -> None:
    client = RespClient(REDIS_URL, 1, 2.0)
    script = _Script(f"-- {uuid.uuid4().hex}\nreturn tonumber(ARGV[1]) + 1")  # never loaded: NOSCRIPT first
    try:
        assert await script(client, [], [41]) == 42
        assert await script(client, [], [1]) == 2  # EVAL loaded it: EVALSHA works now
        with pytest.raises(RedisReplyError):
            await _Script("return redis.call('NOPE')")(client, [], [])
    finally:
        await client.close()


async def test_silent_server_times_out_and_refused_port_fails_fast() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    client = RespClient(f"redis://127.0.0.1:{port}/0", 1, 0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RedisUnavailable, match=r"no reply within 0\.2s"):
        await asyncio.gather(client.call("PING"), client.call("PING"))
    assert 0.15 < loop.time() - started < 1.0
    silent.close()
    await silent.wait_closed()
    await client.close()
    refused = RespClient(f"redis://127.0.0.1:{port}/0", 1, 0.2)
    with pytest.raises(RedisUnavailable, match="cannot connect"):
        await refused.call("PING")


async def test_reconnects_after_the_connection_is_killed() -> None:
    client = RespClient(REDIS_URL, 1, 2.0)
    admin = RespClient(REDIS_URL, 1, 2.0)
    try:
        first = await client.call("CLIENT", "ID")
        assert await admin.call("CLIENT", "KILL", "ID", first) == 1
        for _ in range(100):  # the close reaches the client's loop shortly after the kill
            if client._conns[0] is not None and client._conns[0].closed:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the killed connection was not noticed")
        assert await client.call("CLIENT", "ID") != first  # a new connection, made by the next call
    finally:
        await client.close()
        await admin.close()


async def test_call_nowait_goes_out_on_a_live_connection_before_later_calls() -> None:
    """Whatever slot's turn it is, a call sent now reaches Redis before a call made after it (the settlement of
    one request before the reservation of the next), and only an entirely cold pool declines."""
    client = RespClient(REDIS_URL, 4, 2.0)
    key = f"test-resp-{uuid.uuid4().hex[:8]}"
    try:
        assert client.call_nowait("PING") is None  # nothing is connected yet: the caller makes a task
        await client.call("DEL", key)  # one slot is up now, the next three are not
        for i in range(20):
            sent = client.call_nowait("RPUSH", key, f"early-{i}")
            assert sent is not None
            await client.call("RPUSH", key, f"late-{i}")  # may open a new slot: must still come second
            await sent
        order = [v.decode() for v in await client.call("LRANGE", key, 0, -1)]
        assert order == [f"{when}-{i}" for i in range(20) for when in ("early", "late")]
        await client.call("DEL", key)
    finally:
        await client.close()


def test_urls() -> None:
    c = RespClient("rediss://user:p%40ss@cache.internal:6380/3", 1, 1.0)
    assert (c.host, c.port, c.db, c.username, c.password, c.ssl is not None) == (
        "cache.internal", 6380, 3, "user", "p@ss", True)
    with pytest.raises(ValueError, match="unsupported Redis URL scheme"):
        RespClient("unix:///tmp/redis.sock", 1, 1.0)
