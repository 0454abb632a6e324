"""A key bound to a user speaks for that user: the `user` a client names is only the end user, and can move no
spend or quota to another user. Also: without a key, an unknown model or path is a 401, never a 404."""

from __future__ import annotations

import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess, launch, metric_value
from tests.upstream import Upstream

MASTER = "mk-users-test-93b1d0"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[tuple[GatewayProcess, str]]:
    tmp = tmp_path_factory.mktemp("users")
    db = tmp / "users.db"
    proc = launch([], tmp, config={
        "providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                       "models": ["m", "e"]}],
        "limits": {"rules": [{"name": "per-user", "scope": "user", "window": "1m", "requests": 3, "models": ["m"]},
                             {"name": "per-end-user", "scope": "end_user", "window": "1m", "requests": 2,
                              "models": ["e"]}]},
        "database": {"url": f"sqlite:///{db}", "ledger_flush_interval_s": 0.05},
        "auth": {"master_key": MASTER},
    })
    yield proc, str(db)
    proc.stop(signal.SIGKILL)


def key_for(proc: GatewayProcess, **fields: Any) -> str:
    r = httpx.post(f"{proc.url}/api/v1/keys", headers={"authorization": f"Bearer {MASTER}"}, json=fields)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def ask(proc: GatewayProcess, key: str, model: str, user: str, how: str = "body") -> tuple[int, str]:
    rid = uuid.uuid4().hex
    body: dict[str, Any] = {"model": model, "messages": MESSAGES}
    headers = {"authorization": f"Bearer {key}", "x-request-id": rid}
    if how == "body":
        body["user"] = user
    else:
        headers["user"] = user
    r = httpx.post(f"{proc.v1}/chat/completions", json=body, headers=headers, timeout=10)
    return r.status_code, rid


def rows(db: str, rids: list[str]) -> list[tuple[str, str, int]]:
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(db, timeout=30) as conn:
            found = conn.execute(f"SELECT request_id, user_id, end_user, status FROM gw_usage WHERE request_id "
                                 f"IN ({','.join('?' * len(rids))})", rids).fetchall()
        if len(found) == len(rids) or time.monotonic() > deadline:
            order = {rid: i for i, rid in enumerate(rids)}
            return [(u, e, s) for _, u, e, s in sorted(found, key=lambda r: order[r[0]])]
        time.sleep(0.05)


def test_two_users_naming_each_other_keep_their_own_quota(gw: tuple[GatewayProcess, str]) -> None:
    proc, db = gw
    alice, bob = key_for(proc, user_id="alice"), key_for(proc, user_id="bob")
    # Alice names bob, then others: every request is hers; the fourth is over her limit of 3.
    sent = [ask(proc, alice, "m", name, how) for name, how in (("bob", "body"), ("carol", "header"),
                                                                ("bob", "header"), ("dave", "body"))]
    assert [s for s, _ in sent] == [200, 200, 200, 429]
    # Bob's quota was not used by alice naming him: he gets his 3, naming alice.
    sent_bob = [ask(proc, bob, "m", "alice") for _ in range(4)]
    assert [s for s, _ in sent_bob] == [200, 200, 200, 429]
    assert rows(db, [rid for _, rid in sent + sent_bob]) == [
        ("alice", "bob", 200), ("alice", "carol", 200), ("alice", "bob", 200), ("alice", "dave", 429),
        ("bob", "alice", 200), ("bob", "alice", 200), ("bob", "alice", 200), ("bob", "alice", 429)]
    metrics = httpx.get(f"{proc.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_rate_limited_requests_total",
                        {"scope": "user", "limit": "per-user"}) == 2
    for named_only in ("carol", "dave"):  # users no key speaks for: no spend, no series
        assert f'user="{named_only}"' not in metrics


def test_end_users_are_limited_within_their_key(gw: tuple[GatewayProcess, str]) -> None:
    proc, db = gw
    alice, bob = key_for(proc, user_id="alice2"), key_for(proc, user_id="bob2")
    assert [ask(proc, alice, "e", "zed")[0] for _ in range(3)] == [200, 200, 429]
    assert ask(proc, alice, "e", "yan")[0] == 200  # another end user of hers
    assert ask(proc, bob, "e", "zed")[0] == 200  # bob's zed is not alice's zed: her key cannot use his quota
    status, rid = ask(proc, alice, "e", "zed", "header")
    assert status == 429 and rows(db, [rid]) == [("alice2", "zed", 429)]


def test_unbound_keys_speak_for_no_user(gw: tuple[GatewayProcess, str]) -> None:
    proc, db = gw
    service = key_for(proc)
    sent = [ask(proc, service, "m", "alice") for _ in range(4)]  # alice's per-user quota is not touched
    assert [s for s, _ in sent] == [200] * 4
    assert rows(db, [sent[0][1]]) == [(None, "alice", 200)]


def test_no_key_gets_401_before_any_404(gw: tuple[GatewayProcess, str]) -> None:
    proc, _ = gw
    body = {"model": "no-such-model", "messages": MESSAGES}
    assert httpx.post(f"{proc.v1}/chat/completions", json=body).status_code == 401
    assert httpx.post(f"{proc.v1}/nothing-here", json=body).status_code == 401
    assert httpx.get(f"{proc.v1}/nothing-here").status_code == 401
    master = {"authorization": f"Bearer {MASTER}"}
    assert httpx.post(f"{proc.v1}/chat/completions", json=body, headers=master).status_code == 404
    assert httpx.get(f"{proc.v1}/nothing-here", headers=master).status_code == 404
    limited = {"authorization": f"Bearer {key_for(proc, models=['m'])}"}
    r = httpx.post(f"{proc.v1}/chat/completions", json=body, headers=limited)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
