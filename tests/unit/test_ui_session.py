"""Dashboard sessions (ui/session.py) and the shared authorization rules (keys/roles.py)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from llm_gateway.db.engine import make_engine, upgrade
from llm_gateway.db.tables import ui_sessions
from llm_gateway.errors import GatewayError
from llm_gateway.keys.model import KeyRecord, UserRecord
from llm_gateway.keys.roles import (
    MASTER,
    Identity,
    key_scope,
    may_manage_key,
    of_sso_user,
    of_user,
    require_team,
    usage_scope,
)
from llm_gateway.keys.store import Store
from llm_gateway.ui.session import COOKIE, Session, Sessions, base_path


def request(cookie: str | None = None, scheme: str = "http", headers: dict[str, str] | None = None,
            root_path: str = "") -> Request:
    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if cookie is not None:
        raw.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/ui/", "headers": raw, "scheme": scheme,
                             "query_string": b"", "root_path": root_path, "server": ("gw", 443)}
    return Request(scope)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path}/sessions.db")
    upgrade(engine)
    return Store(engine)


def signed_in(sessions: Sessions, identity: Identity, scheme: str = "http",
              method: str = "master_key") -> tuple[str, str]:
    response = Response()
    asyncio.run(sessions.sign_in(request(scheme=scheme), identity, method, response))
    header = response.headers["set-cookie"]
    return header.split(";", 1)[0].split("=", 1)[1], header


def read(sessions: Sessions, cookie: str) -> Session | None:
    return asyncio.run(sessions.read(request(cookie)))


def test_the_cookie_is_signed_http_only_lax_and_secure_under_tls(store: Store) -> None:
    sessions = Sessions(b"k" * 32, store.engine)
    value, header = signed_in(sessions, MASTER, scheme="https")
    assert "HttpOnly" in header and "SameSite=lax" in header and "Secure" in header and "Path=/ui" in header
    assert "Secure" not in signed_in(sessions, MASTER)[1]
    session = read(sessions, value)
    assert session is not None and session.identity == MASTER and len(session.csrf) >= 24
    assert session.sid not in repr(session)
    assert read(sessions, value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    assert read(Sessions(b"x" * 32, store.engine), value) is None  # another secret
    assert Sessions.csrf_ok(session, session.csrf) and not Sessions.csrf_ok(session, "") \
        and not Sessions.csrf_ok(session, session.csrf + "x")
    with store.engine.connect() as conn:  # the database holds the id's hash, never the id
        held = {h for (h,) in conn.execute(select(ui_sessions.c.id_hash))}
    assert session.sid not in held and hashlib.sha256(session.sid.encode()).hexdigest() in held


def test_idle_and_absolute_expiry(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    sessions = Sessions(b"k" * 32, store.engine, idle_s=60, absolute_s=300)
    value, _ = signed_in(sessions, MASTER)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 120)
    assert read(sessions, value) is None  # idle for two minutes
    monkeypatch.setattr(time, "time", lambda: now)
    value, _ = signed_in(sessions, MASTER)
    session = read(sessions, value)
    assert session is not None
    for step in range(1, 7):  # active every 50 s: idle never reached, the absolute limit is
        monkeypatch.setattr(time, "time", lambda step=step: now + 50 * step)
        response = Response()
        sessions.refresh(request(value), session, response)
        value = response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
        assert (read(sessions, value) is not None) == (50 * step < 300)


def test_sign_out_ends_every_copy_and_expired_rows_are_dropped(monkeypatch: pytest.MonkeyPatch,
                                                               store: Store) -> None:
    sessions = Sessions(b"k" * 32, store.engine, idle_s=60, absolute_s=300)
    value, _ = signed_in(sessions, MASTER)
    kept, _ = signed_in(sessions, MASTER)
    asyncio.run(sessions.sign_out(request(value), Response()))
    assert read(sessions, value) is None and read(sessions, kept) is not None
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 400)  # `kept` expired; the next sign-in drops its row
    signed_in(sessions, MASTER)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ui_sessions)).scalar() == 1


def test_who_a_session_is_comes_from_the_user_as_it_is_now(store: Store) -> None:
    sessions = Sessions(b"k" * 32, store.engine)
    store.create_team({"id": "red"})
    _, lead = store.create_user({"id": "lead", "team_id": "red", "role": "team_admin"})
    value, _ = signed_in(sessions, of_user(lead), method="user_token")
    first = read(sessions, value)
    assert first is not None and first.identity.is_team_admin
    store.update_user("lead", {"role": "user"})
    second = read(sessions, value)
    assert second is not None and not second.identity.is_team_admin and second.identity.user_id == "lead"
    _, idp = store.create_user({"id": "idp-ann", "metadata": {"sso": {"admin": True, "name": "Ann"}}})
    value, _ = signed_in(sessions, of_sso_user(idp), method="oidc:corp")
    session = read(sessions, value)
    assert session is not None and session.identity.is_admin and session.identity.name == "Ann"
    store.update_user("idp-ann", {"metadata": {"sso": {"admin": False, "name": "Ann"}}})  # a group sync
    session = read(sessions, value)
    assert session is not None and not session.identity.is_admin
    store.delete_user("idp-ann")
    assert read(sessions, value) is None


def test_sign_in_refuses_unknown_roles(store: Store) -> None:
    with pytest.raises(ValueError):
        signed_in(Sessions(b"k" * 32, store.engine), Identity("idp:bob", frozenset({"superuser"})))


def test_the_base_path_follows_the_root_path_or_a_clean_forwarded_prefix() -> None:
    assert base_path(request()) == "/ui"
    assert base_path(request(root_path="/gw")) == "/gw/ui"
    assert base_path(request(headers={"x-forwarded-prefix": "/llm/"})) == "/llm/ui"
    assert base_path(request(headers={"x-forwarded-prefix": '/x"><script>'})) == "/ui"


def test_roles_scope_keys_and_usage() -> None:
    alice = of_user(UserRecord("alice", team_id="red"))
    lead = of_user(UserRecord("lead", team_id="red", role="team_admin"))
    mine = KeyRecord("k1", "h", "sk-", user_id="alice", team_id="red")
    team_key = KeyRecord("k2", "h2", "sk-", user_id="bob", team_id="red")
    other = KeyRecord("k3", "h3", "sk-", user_id="carol", team_id="blue")
    assert key_scope(MASTER) == {} and usage_scope(MASTER) is None
    assert [may_manage_key(alice, k) for k in (mine, team_key, other)] == [True, False, False]
    assert [may_manage_key(lead, k) for k in (mine, team_key, other)] == [True, True, False]
    assert usage_scope(alice) == ("user", "alice") and usage_scope(lead) == ("team", "red")
    require_team(lead, "red")
    with pytest.raises(GatewayError):
        require_team(lead, "blue")
    with pytest.raises(GatewayError):
        require_team(alice, "red")
    assert not of_user(UserRecord("x", role="team_admin")).is_team_admin  # no team: no team to manage
