"""Dashboard sessions are held by the server, through the real `llm-gateway` process: a copy of the session cookie
stops working at sign-out (on every replica that shares the database), and a role change or a user's deletion
applies to the sessions already open at their next request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess
from tests.pg import fresh_schema
from tests.upstream import Upstream

MASTER = "mk-dashboard-sessions-7a2"
COOKIE = "llm_gateway_ui"


def config(upstream: Upstream, db_url: str) -> dict[str, Any]:
    return {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                           "models": ["*"]}],
            "database": {"url": db_url}}


def form_token(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def sign_in(gw: GatewayProcess, secret: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in with `secret`, and a copy of its session cookie."""
    ui = httpx.Client(base_url=f"{gw.url}/ui")
    signed = ui.post("/login", data={"csrf": form_token(ui.get("/login").text), "secret": secret})
    assert signed.status_code == 303 and signed.headers["location"].endswith("/ui/"), signed.text
    return ui, ui.cookies[COOKIE]


def with_cookie(gw: GatewayProcess, cookie: str) -> httpx.Client:
    """Another client (a stolen copy, another tab) that presents `cookie`."""
    return httpx.Client(base_url=f"{gw.url}/ui", headers={"cookie": f"{COOKIE}={cookie}"})


def signed_out(response: httpx.Response) -> bool:
    return response.status_code == 303 and response.headers["location"].endswith("/ui/login")


def sign_out(ui: httpx.Client) -> None:
    out = ui.post("/logout", data={"csrf": form_token(ui.get("/keys").text)})
    assert signed_out(out)


def admin_api(gw: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=f"{gw.url}/api/v1/", headers={"authorization": f"Bearer {MASTER}"})


@pytest.fixture
def gw(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path) -> GatewayProcess:
    return gateway_factory(config=config(upstream, f"sqlite:///{tmp_path}/sessions.db"),
                           env={"LLM_GATEWAY_MASTER_KEY": MASTER})


@pytest.mark.parametrize("secret", ["master", "user token"])
def test_a_copy_of_the_cookie_is_refused_after_sign_out(gw: GatewayProcess, secret: str) -> None:
    if secret == "master":
        secret = MASTER
    else:
        secret = admin_api(gw).post("users", json={"id": "carol"}).json()["token"]
    ui, copy = sign_in(gw, secret)
    other = with_cookie(gw, copy)
    assert other.get("/keys").status_code == 200  # the copy works while the session is open
    sign_out(ui)
    assert signed_out(ui.get("/keys"))
    assert signed_out(other.get("/keys"))
    assert signed_out(other.get("/"))
    assert other.post("/logout", data={"csrf": "x"}).status_code == 303
    assert copy not in gw.log()


def test_a_demoted_team_admin_loses_the_team_at_the_next_request(gw: GatewayProcess) -> None:
    api = admin_api(gw)
    api.post("teams", json={"id": "red"})
    lead = api.post("users", json={"id": "lead", "team_id": "red", "role": "team_admin"}).json()
    ui, copy = sign_in(gw, lead["token"])
    assert ui.get("/teams/red").status_code == 200
    assert api.patch("users/lead", json={"role": "user"}).status_code == 200
    assert ui.get("/teams/red").status_code == 403  # the open session is a plain user now
    assert with_cookie(gw, copy).get("/teams/red").status_code == 403
    assert ui.get("/keys").status_code == 200  # still signed in, as a user
    assert api.patch("users/lead", json={"role": "team_admin"}).status_code == 200
    assert ui.get("/teams/red").status_code == 200  # and promoted again, at the next request too


def test_a_deleted_user_is_signed_out(gw: GatewayProcess) -> None:
    api = admin_api(gw)
    bob = api.post("users", json={"id": "bob"}).json()
    ui, copy = sign_in(gw, bob["token"])
    assert ui.get("/keys").status_code == 200
    assert api.delete("users/bob").status_code == 200
    assert signed_out(ui.get("/keys"))
    assert signed_out(with_cookie(gw, copy).get("/"))
    api.post("users", json={"id": "bob"})  # a new user of the same id does not revive the old session
    assert signed_out(with_cookie(gw, copy).get("/keys"))


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema("test_sessions", skip_unavailable=True) as url:
        yield url


def test_sign_out_on_one_replica_ends_the_session_on_the_other(
        pg_url: str, gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    # `pg_url` first: set up before the gateways, torn down after they stopped
    first, second = (gateway_factory(config=config(upstream, pg_url), env={"LLM_GATEWAY_MASTER_KEY": MASTER})
                     for _ in range(2))
    ui, copy = sign_in(first, MASTER)
    on_second = with_cookie(second, copy)
    assert on_second.get("/keys").status_code == 200  # replicas share sessions
    sign_out(ui)
    assert signed_out(on_second.get("/keys"))
    assert signed_out(with_cookie(first, copy).get("/keys"))


def test_a_rotated_user_token_stops_at_once_with_the_sessions_it_opened(gw: GatewayProcess) -> None:
    """A leaked user token is replaced without deleting the user: by an admin, or by the user itself."""
    admin = admin_api(gw)
    old = admin.post("users", json={"id": "dana"}).json()["token"]
    ui, _ = sign_in(gw, old)
    master_ui, _ = sign_in(gw, MASTER)

    def me(token: str) -> int:
        return httpx.get(f"{gw.url}/api/v1/me/keys", headers={"authorization": f"Bearer {token}"}).status_code

    rotated = admin.post("users/dana/token")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["token"]
    assert new != old and rotated.json()["user_id"] == "dana"
    assert me(old) == 401 and me(new) == 200
    assert signed_out(ui.get("/keys"))  # the session the old token opened
    assert master_ui.get("/keys").status_code == 200  # others stay
    assert admin.post("users/nobody/token").status_code == 404
    # the user itself, with its current token
    own = httpx.post(f"{gw.url}/api/v1/me/token", headers={"authorization": f"Bearer {new}"})
    assert own.status_code == 200, own.text
    assert me(new) == 401 and me(own.json()["token"]) == 200
    assert new not in gw.log() and own.json()["token"] not in gw.log()
    rows = admin.get("audit", params={"event": "token_rotated"}).json()["data"]
    assert [(r["method"], r["user_id"]) for r in rows] == [("user_token", "dana"), ("admin", "dana")], rows


def test_a_team_admin_role_stays_with_its_team(gw: GatewayProcess) -> None:
    """A team admin who leaves the team it manages, or whose team is deleted, is no admin of its next team."""
    api = admin_api(gw)
    for team in ("red", "blue", "green"):
        api.post("teams", json={"id": team})
    api.post("users", json={"id": "bob", "team_id": "blue"})
    lead = api.post("users", json={"id": "lead", "team_id": "red", "role": "team_admin"}).json()
    assert api.put("users/lead/teams", json={"teams": ["red", "blue"]}).json()["team_id"] == "red"
    ui, _ = sign_in(gw, lead["token"])
    assert (ui.get("/teams/red").status_code, ui.get("/teams/blue").status_code) == (200, 403)
    assert api.put("users/lead/teams", json={"teams": ["blue"]}).json()["team_id"] == "blue"
    assert ui.get("/teams/blue").status_code == 403  # a member of blue, not its admin
    assert "bob" not in ui.get("/keys").text
    assert api.get("users/lead").json()["role"] == "user"
    other = api.post("users", json={"id": "other", "team_id": "green", "role": "team_admin"}).json()
    api.put("users/other/teams", json={"teams": ["green", "blue"]})
    assert api.delete("teams/green").status_code == 200
    assert api.get("users/other").json()["role"] == "user"
    ui2, _ = sign_in(gw, other["token"])
    assert ui2.get("/teams/blue").status_code == 403
    changes = api.get("audit", params={"event": "role_change"}).json()["data"]
    assert [(c["user_id"], c["detail"]["reason"]) for c in changes if c["detail"]["previous"] == "team_admin"] == [
        ("other", "team green deleted"), ("lead", "primary team changed to blue")]
    assert api.patch("users/lead", json={"team_id": "red", "role": "team_admin"}).json()["role"] == "team_admin"
    assert ui.get("/teams/red").status_code == 200  # an admin may make it the admin of another team, explicitly


def test_a_team_admin_makes_keys_only_for_its_teams_members(gw: GatewayProcess) -> None:
    """A key's user is charged for it and shown as its spender: a team admin may not name someone outside its team."""
    api = admin_api(gw)
    for team in ("red", "blue"):
        api.post("teams", json={"id": team})
    api.post("users", json={"id": "bob", "team_id": "blue"})
    api.post("users", json={"id": "ruth", "team_id": "blue"})
    api.put("users/ruth/teams", json={"teams": ["blue", "red"]})  # a member of red too (not her primary team)
    lead = api.post("users", json={"id": "lead", "team_id": "red", "role": "team_admin"}).json()
    ui, _ = sign_in(gw, lead["token"])

    def create(**fields: str) -> httpx.Response:
        return ui.post("/keys", data={"csrf": form_token(ui.get("/keys").text), "alias": "k", **fields})

    refused = create(user_id="bob")
    assert refused.status_code == 403 and "bob" in refused.text
    assert api.get("keys", params={"user_id": "bob"}).json()["data"] == []
    assert create(user_id="ruth").status_code == 201
    assert create(user_id="lead").status_code == 201
    assert create().status_code == 201  # a team key of no user
    made = api.get("keys", params={"team_id": "red"}).json()["data"]
    assert sorted(k["user_id"] or "" for k in made) == ["", "lead", "ruth"]
    api.post("keys", json={"user_id": "ruth", "team_id": "blue", "alias": "ruths-blue-key"})
    page = ui.get("/users/ruth")
    assert page.status_code == 200 and "ruths-blue-key" not in page.text  # her keys of other teams are not red's


def test_cookies_are_secure_when_browsers_reach_the_gateway_over_https(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, tmp_path: Path) -> None:
    """Behind a proxy that ends TLS the gateway hears plain HTTP; `sso.public_url` says browsers use https, so the
    session cookie must be `Secure` (or the browser sends it over any plain-HTTP request to the host)."""
    cfg = {**config(upstream, f"sqlite:///{tmp_path}/secure.db"), "sso": {"public_url": "https://llm.example.com"}}
    gw = gateway_factory(config=cfg, env={"LLM_GATEWAY_MASTER_KEY": MASTER})
    with httpx.Client(base_url=f"{gw.url}/ui") as ui:
        page = ui.get("/login")
        pre = page.headers["set-cookie"]
        assert "secure" in pre.lower(), pre
        value = pre.split(";", 1)[0]  # the client keeps Secure cookies from plain HTTP: send it by hand
        signed = ui.post("/login", data={"csrf": form_token(page.text), "secret": MASTER},
                         headers={"cookie": value})
        assert signed.status_code == 303, signed.text
        session = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
        assert "secure" in session.lower() and "httponly" in session.lower(), session


def test_the_csv_export_names_its_own_file(gw: GatewayProcess) -> None:
    """`view` went into the download's file name as given: a link could make a signed-in admin save the usage
    (which holds model names clients chose) as `usage-x.bat`, and a non-Latin-1 `view` was a 500."""
    ui, _ = sign_in(gw, MASTER)
    for view in ['x.bat"; x="', "\u2603", "series"]:
        r = ui.get("/export.csv", params={"view": view})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] in ('attachment; filename="usage-groups.csv"',
                                                    'attachment; filename="usage-series.csv"'), r.headers
