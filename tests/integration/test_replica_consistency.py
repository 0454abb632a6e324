"""What two replicas see of each other's changes, measured: a cooldown started on one reaches the other within
`routing.cooldown.sync_interval_s`; a key blocked on one is refused by the other within `auth.key_cache_ttl_s`.
docs/deploy.md quotes these bounds."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import GatewayProcess, wait_until_answering
from tests.upstream import Upstream

MASTER = "sk-master-deploy-consistency"
ADMIN = {"authorization": f"Bearer {MASTER}"}
SYNC_S, TTL_S = 0.5, 1.0


def until(check: Callable[[], bool], limit: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < limit, f"not seen within {limit:g}s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_cooldowns_and_key_changes_reach_the_other_replica_within_their_bounds(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["m", "error-503"]}],  # both replicas have both deployments
              "auth": {"master_key": MASTER, "key_cache_ttl_s": TTL_S},
              "database": {"url": f"sqlite:///{tmp_path / 'shared.db'}"},
              "redis": {"url": "redis://127.0.0.1:6379/14"},
              "limits": {"redis_prefix": f"deploy-consistency-{tag}:"},
              "routing": {"cooldown": {"failures": 1, "cooldown_s": 30, "sync_interval_s": SYNC_S,
                                       "redis_prefix": f"deploy-consistency-{tag}:cool:"}}}
    a, b = (gateway_factory(config=config, wait=False) for _ in range(2))
    for gw in (a, b):
        wait_until_answering(gw.proc, f"{gw.url}/health", gw.log_path, 60, "gateway")

    key = httpx.post(f"{a.url}/api/v1/keys", json={"alias": "shared"}, headers=ADMIN).json()
    user = {"authorization": f"Bearer {key['key']}"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{b.v1}/chat/completions", json=body, headers=user).status_code == 200  # a new key: at once

    # A cooldown: one failure on A takes the deployment out; B learns it from Redis.
    def cooling(gw: GatewayProcess) -> bool:
        deps = httpx.get(f"{gw.url}/api/v1/providers/status", headers=ADMIN).json()["deployments"]
        return any(d["cooldown_remaining_s"] > 0 for d in deps)
    assert not cooling(b)
    assert httpx.post(f"{a.v1}/chat/completions", json={**body, "model": "error-503"}, headers=user).status_code == 503
    assert cooling(a)
    cooldown_lag = until(lambda: cooling(b), SYNC_S + 1.0)

    # A key blocked on A: B serves it from its cache until the entry is TTL old, then re-reads and refuses.
    assert httpx.post(f"{a.url}/api/v1/keys/{key['id']}/block", headers=ADMIN).status_code == 200
    assert httpx.get(f"{a.v1}/models", headers=user).status_code == 401  # the replica that changed it: at once
    key_lag = until(lambda: httpx.get(f"{b.v1}/models", headers=user).status_code == 401, TTL_S + 1.5)
    print(f"cooldown reached the other replica in {cooldown_lag:.2f}s (sync {SYNC_S}s); "
          f"a blocked key in {key_lag:.2f}s (TTL {TTL_S}s)")
    assert a.stop() == 0 and b.stop() == 0
