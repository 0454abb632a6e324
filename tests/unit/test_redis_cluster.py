"""Hash slots and command routing of the Cluster client, against redis-py's own slot function."""

from __future__ import annotations

import random

from redis.crc import key_slot

from llm_gateway.redis_cluster import command_key, slot_of
from llm_gateway.redis_sentinel import parse_node


def test_slots_match_redis() -> None:
    rng = random.Random(7)
    keys = ["", "a", "{user1000}.following", "foo{}{bar}", "{}x", "x{y}z", "{{a}}", "é", "per_user_tokens|{bob}"]
    keys += ["".join(rng.choice("ab{}|:x") for _ in range(rng.randrange(1, 12))) for _ in range(500)]
    for key in keys:
        assert slot_of(key) == key_slot(key.encode()), key
    assert slot_of("llmgw:limits:user/60s|{alice}") == slot_of("llmgw:limits:user_model/60s|{alice}|gpt-4o")


def test_command_key() -> None:
    assert command_key(("EVALSHA", "abc", 2, "k1", "k2", 5)) == "k1"
    assert command_key(("EVAL", "return 1", 0)) is None
    assert command_key(("HSET", "h", "f", "v")) == "h"
    assert command_key(("SCRIPT", "LOAD", "return 1")) is None


def test_parse_node() -> None:
    assert parse_node("10.0.0.1:26380", 26379) == ("10.0.0.1", 26380)
    assert parse_node("sentinel-0", 26379) == ("sentinel-0", 26379)
    assert parse_node("[::1]:7000", 6379) == ("::1", 7000)


def test_topology_config() -> None:
    import pytest
    from pydantic import ValidationError

    from llm_gateway.redis_client import RespClient
    from llm_gateway.redis_cluster import ClusterClient
    from llm_gateway.redis_sentinel import SentinelClient
    from llm_gateway.redis_topology import open_client
    from llm_gateway.settings import RedisConfig

    sentinel = RedisConfig.model_validate({"sentinel": {"master_name": "gw", "nodes": ["s1:26379"]}})
    assert sentinel.url == "redis://"  # set, so every Redis user turns on; the sentinels name the host
    assert isinstance(open_client(sentinel.url, 1, 1.0, sentinel), SentinelClient)
    cluster = RedisConfig.model_validate({"cluster": True, "nodes": ["c1:7000", "c2:7000"]})
    assert cluster.url == "redis://c1:7000"
    assert isinstance(open_client(cluster.url, 1, 1.0, cluster), ClusterClient)
    assert type(open_client("redis://x:6379/0", 1, 1.0, RedisConfig())) is RespClient
    with pytest.raises(ValidationError, match="not both"):
        RedisConfig.model_validate({"cluster": True, "url": "redis://a", "sentinel": {"master_name": "g",
                                                                                     "nodes": ["s:1"]}})
    with pytest.raises(ValidationError, match="set url or nodes"):
        RedisConfig.model_validate({"cluster": True})
