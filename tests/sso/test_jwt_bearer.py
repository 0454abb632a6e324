"""IdP access tokens as API credentials through the real `llm-gateway` process, the OpenAI SDK as the client and a
local JWKS endpoint as the IdP: accepted tokens are billed to the user and team their subject and groups map to;
expired, wrong-issuer, wrong-audience, unsigned and tampered tokens are refused with a clear error and an audit row;
a rotated signing key is picked up; two groups give two teams, and leaving a group blocks the keys held through its
team (only its) at the next token."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import psutil
import pytest
from tests.conftest import GatewayProcess, launch
from tests.sso.idp import JwksServer, token
from tests.upstream import Upstream

MASTER = "mk-sso-jwt-test-41c2"
AUD = "llm-gateway"


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    server = JwksServer().start()
    server.add_rsa("rsa-1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, idp: JwksServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("sso-jwt")
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["gpt-4o-mini"]}],
              "database": {"url": f"sqlite:///{tmp}/sso.db", "ledger_flush_interval_s": 0.05},
              "pricing": {"models": {"gpt-4o-mini": {"input": 1.0, "output": 1.0}}},
              "auth": {"jwt": [{"issuer": idp.url, "audience": AUD, "jwks_url": idp.url + "/jwks",
                                "user_claim": "sub", "groups_claim": "groups"}]},
              "sso": {"group_mapping": {"data-team": "team_data", "llm-admins": "admin", "ops": "team_ops",
                                        "ml-team": "team_ml"}}}
    gw = launch([], tmp, {"LLM_GATEWAY_MASTER_KEY": MASTER}, config)
    yield gw
    gw.stop()


def chat(gw: GatewayProcess, credential: str) -> str:
    client = openai.OpenAI(base_url=gw.v1, api_key=credential, max_retries=0)
    out = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return out.choices[0].message.content or ""


def refused(gw: GatewayProcess, credential: str) -> dict[str, str]:
    with pytest.raises(openai.AuthenticationError) as info:
        chat(gw, credential)
    body = info.value.body
    assert isinstance(body, dict)
    return body  # type: ignore[return-value]


def audit(gw: GatewayProcess, **params: str) -> list[dict[str, object]]:
    time.sleep(0.2)  # audit rows are written off the request path
    r = httpx.get(f"{gw.url}/api/v1/audit", params=params, headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_a_valid_token_is_billed_to_its_user_and_team(gateway: GatewayProcess, idp: JwksServer) -> None:
    access = token(idp.keys[0], iss=idp.url, aud=AUD, sub="alice", groups=["data-team"], email="alice@example.com")
    assert chat(gateway, access)
    assert chat(gateway, access)  # the second call comes from the validated-token cache
    time.sleep(0.3)
    users = httpx.get(f"{gateway.url}/api/v1/users", headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    alice = next(u for u in users if u["email"] == "alice@example.com")
    assert alice["team_id"] == "team_data"
    usage = httpx.get(f"{gateway.url}/api/v1/usage", params={"user_id": alice["id"]},
                      headers={"authorization": f"Bearer {MASTER}"}).json()
    assert usage["totals"]["total_requests"] == 2, usage
    rows = audit(gateway, user_id=alice["id"])
    joined = [e for e in rows if e["event"] == "team_change"]
    assert joined and joined[-1]["detail"]["joined"] == ["team_data"]
    assert [e["method"] for e in rows if e["event"] == "sign_in"] == ["jwt"]  # one per token, not per call


@pytest.mark.parametrize(("claims", "alg", "reason"), [
    ({"exp": int(time.time()) - 120}, "RS256", "expired"),
    ({"iss": "https://evil.example.com"}, "RS256", "issuer is not trusted"),
    ({"aud": "another-app"}, "RS256", "aud"),
    ({"sub": None}, "RS256", "sub"),
])
def test_bad_tokens_are_refused_with_a_reason_and_an_audit_row(gateway: GatewayProcess, idp: JwksServer,
                                                                claims: dict[str, object], alg: str,
                                                                reason: str) -> None:
    base = {"iss": idp.url, "aud": AUD, "sub": "mallory", "groups": ["llm-admins"]}
    bad = token(idp.keys[0], alg, **{**base, **claims})
    body = refused(gateway, bad)
    assert body["code"] == "invalid_token" and reason in body["message"], body
    assert bad not in json.dumps(body)
    rows = [e for e in audit(gateway, event="token_refused") if reason in str(e["detail"])]
    assert rows and rows[0]["outcome"] == "refused"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_unsigned_and_tampered_tokens_are_refused(gateway: GatewayProcess, idp: JwksServer) -> None:
    claims = {"iss": idp.url, "aud": AUD, "sub": "mallory", "exp": int(time.time()) + 600, "iat": int(time.time())}
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    body = refused(gateway, unsigned)
    assert "alg 'none'" in body["message"]
    good = token(idp.keys[0], **claims)
    head, _, sig = good.split(".")
    tampered = f"{head}.{b64({**claims, 'sub': 'alice'})}.{sig}"
    assert "signature does not verify" in refused(gateway, tampered)["message"]
    hs256 = f"{b64({'alg': 'HS256', 'kid': 'rsa-1'})}.{b64(claims)}.{sig}"
    assert "algorithm 'HS256' is not accepted" in refused(gateway, hs256)["message"]
    assert len([e for e in audit(gateway, event="token_refused")]) >= 3


def test_a_rotated_es256_key_is_fetched_once(gateway: GatewayProcess, idp: JwksServer) -> None:
    time.sleep(2.1)  # the gateway re-reads a JWKS at most every 2 s
    hits = idp.hits
    new_key = idp.add_ec("ec-2")
    access = token(new_key, "ES256", iss=idp.url, aud=AUD, sub="bob", groups=[])
    assert chat(gateway, access)
    assert idp.hits == hits + 1
    forged = token(idp.add_ec("never-published"), "ES256", iss=idp.url, aud=AUD, sub="bob")
    idp.keys.pop()  # the IdP never publishes it
    time.sleep(2.1)
    assert "key the issuer does not publish" in refused(gateway, forged)["message"]


def test_leaving_the_group_blocks_the_teams_keys_at_the_next_token(gateway: GatewayProcess,
                                                                   idp: JwksServer) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}
    first = token(idp.keys[0], iss=idp.url, aud=AUD, sub="carol", groups=["data-team"], email="carol@example.com")
    assert chat(gateway, first)
    users = httpx.get(f"{gateway.url}/api/v1/users", headers=admin).json()["data"]
    carol = next(u for u in users if u["email"] == "carol@example.com")
    made = httpx.post(f"{gateway.url}/api/v1/keys", headers=admin,
                      json={"user_id": carol["id"], "team_id": "team_data", "alias": "carol-data"})
    assert made.status_code in (200, 201), made.text
    team_key = made.json()["key"]
    assert chat(gateway, team_key)
    later = token(idp.keys[0], iss=idp.url, aud=AUD, sub="carol", groups=[], email="carol@example.com",
                  jti="second")
    assert chat(gateway, later)  # the token still works (as a user of no team) ...
    body = refused(gateway, team_key)  # ... but the key held through the team is refused at once
    assert body["code"] == "key_blocked"
    rows = audit(gateway, user_id=carol["id"])
    assert any(e["event"] == "team_change" and e["detail"]["left"] == ["team_data"] for e in rows)
    assert any(e["event"] == "key_blocked" for e in rows)


def test_the_audit_api_needs_the_master_key(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.url}/api/v1/audit").status_code == 401
    assert httpx.get(f"{gateway.url}/api/v1/audit", params={"limit": 0},
                     headers={"authorization": f"Bearer {MASTER}"}).status_code == 422


def test_log_has_no_tokens(gateway: GatewayProcess) -> None:
    assert "eyJ" not in gateway.log()



def test_concurrent_first_uses_share_one_check(gateway: GatewayProcess, idp: JwksServer) -> None:
    access = token(idp.keys[0], iss=idp.url, aud=AUD, sub="dave", groups=["data-team"], email="dave@example.com")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: chat(gateway, access), range(16)))
    assert all(answers)
    users = httpx.get(f"{gateway.url}/api/v1/users", headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    assert [u["email"] for u in users].count("dave@example.com") == 1


def _sign_in_form(browserless: httpx.Client, secret: str) -> httpx.Response:
    """The dashboard's sign-in form, sent with `secret` as a browser would (its CSRF token from the page)."""
    csrf = re.search(r'name="csrf" value="([^"]+)"', browserless.get("/ui/login").text)
    assert csrf is not None
    return browserless.post("/ui/login", data={"csrf": csrf.group(1), "secret": secret})


def test_dashboard_sign_in_and_out_with_the_master_key_are_audited(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as browserless:
        assert _sign_in_form(browserless, MASTER).status_code == 303
        home = browserless.get("/ui/")
        session_csrf = re.search(r'name="csrf" value="([^"]+)"', home.text)
        assert session_csrf is not None
        assert browserless.post("/ui/logout", data={"csrf": session_csrf.group(1)}).status_code == 303
    rows = audit(gateway)
    assert any(r["event"] == "sign_in" and r["method"] == "master_key" for r in rows)
    assert any(r["event"] == "sign_out" and r["method"] == "master_key" for r in rows)
    assert MASTER not in json.dumps(rows)


def test_a_refused_dashboard_sign_in_is_audited(gateway: GatewayProcess) -> None:
    """Someone guessing the master key or a user token at /ui/login left no trace: the form's refusals are
    `sign_in_refused` rows (without the secret tried), as the IdPs' are."""
    guess = "mk-guessed-secret-5d1e"
    with httpx.Client(base_url=gateway.url) as browserless:
        assert _sign_in_form(browserless, guess).status_code == 401
    rows = audit(gateway, event="sign_in_refused")
    assert any(r["method"] == "dashboard" and r["client_ip"] == "127.0.0.1" for r in rows), rows
    assert guess not in json.dumps(rows)


def test_the_teams_budget_applies_to_a_token(gateway: GatewayProcess, idp: JwksServer) -> None:
    access = token(idp.keys[0], iss=idp.url, aud=AUD, sub="olga", groups=["ops"])
    assert chat(gateway, access)  # the sync creates team_ops; the team spends $0.000016
    patched = httpx.patch(f"{gateway.url}/api/v1/teams/team_ops", json={"budget_usd": 1e-5},
                          headers={"authorization": f"Bearer {MASTER}"})
    assert patched.status_code == 200, patched.text
    with pytest.raises(openai.RateLimitError) as info:  # a budget below what the period spent binds at once
        chat(gateway, access)
    assert info.value.code == "budget_exceeded"


def test_role_changes_through_the_admin_api_are_audited(gateway: GatewayProcess) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}
    made = httpx.post(f"{gateway.url}/api/v1/users", headers=admin, json={"id": "ivy", "team_id": "team_data"})
    assert made.status_code in (200, 201), made.text
    assert httpx.patch(f"{gateway.url}/api/v1/users/ivy", headers=admin, json={"role": "team_admin"}).status_code == 200
    assert httpx.patch(f"{gateway.url}/api/v1/users/ivy", headers=admin, json={"budget_usd": 5}).status_code == 200
    rows = [r for r in audit(gateway, user_id="ivy") if r["event"] == "role_change"]
    assert [(r["detail"]["previous"], r["detail"]["role"]) for r in rows] == [("user", "team_admin")]


def test_a_token_with_two_groups_gives_two_teams_and_a_later_one_takes_one_away(gateway: GatewayProcess,
                                                                                 idp: JwksServer) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}
    first = token(idp.keys[0], iss=idp.url, aud=AUD, sub="gwen", groups=["ml-team", "data-team"],
                  email="gwen@example.com")
    assert chat(gateway, first)
    users = httpx.get(f"{gateway.url}/api/v1/users", params={"team_id": "team_ml"}, headers=admin).json()["data"]
    gwen = next(u for u in users if u["email"] == "gwen@example.com")
    # the primary team is the first mapped one in group_mapping's order (data-team before ml-team)
    assert (gwen["team_id"], gwen["teams"]) == ("team_data", ["team_data", "team_ml"])
    teams = httpx.get(f"{gateway.url}/api/v1/users/{gwen['id']}/teams", headers=admin).json()
    assert teams["teams"] == ["team_data", "team_ml"]
    made = {}
    for team in ("team_data", "team_ml"):
        r = httpx.post(f"{gateway.url}/api/v1/keys", headers=admin,
                       json={"user_id": gwen["id"], "team_id": team, "alias": f"gwen-{team}"})
        assert r.status_code == 201, r.text
        made[team] = r.json()["key"]
        assert chat(gateway, made[team])
    later = token(idp.keys[0], iss=idp.url, aud=AUD, sub="gwen", groups=["ml-team"], email="gwen@example.com",
                  jti="second")
    assert chat(gateway, later)  # the new token syncs: gwen is in team_ml only
    assert refused(gateway, made["team_data"])["code"] == "key_blocked"  # at once
    assert chat(gateway, made["team_ml"])  # the other team's key still works
    after = httpx.get(f"{gateway.url}/api/v1/users/{gwen['id']}/teams", headers=admin).json()
    assert (after["team_id"], after["teams"]) == ("team_ml", ["team_ml"])
    rows = audit(gateway, user_id=gwen["id"])
    assert [e["detail"] for e in rows if e["event"] == "team_change"] == [
        {"joined": [], "left": ["team_data"]}, {"joined": ["team_data", "team_ml"], "left": []}]
    assert [e["detail"]["team_id"] for e in rows if e["event"] == "key_blocked"] == ["team_data"]


def test_refused_large_tokens_do_not_pile_up_in_memory(gateway: GatewayProcess) -> None:
    """Each refused token is remembered for 60 s (10,000 at most): kept by their text, 400 made-up 60 KB tokens held
    28 MB of the gateway's memory (10,000 of them 600 MB, from anyone, without a key)."""
    proc = psutil.Process(gateway.proc.pid)
    filler = "A" * 60_000
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        def send(i: int) -> httpx.Response:
            return client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                               headers={"authorization": f"Bearer e30.{filler}{i:06d}.x"})
        first = send(0)
        assert first.status_code == 401, first.text
        assert filler not in first.text
        rss_before = proc.memory_info().rss
        for i in range(1, 401):
            assert send(i).status_code == 401
    grown = proc.memory_info().rss - rss_before
    assert grown < 12 * 2**20, f"400 refused tokens kept {grown / 2**20:.0f} MB"


def test_an_issuer_with_a_trailing_slash_is_the_same_issuer(gateway: GatewayProcess, idp: JwksServer) -> None:
    """Auth0 (and others) write `iss` with a trailing slash ("https://tenant.auth0.com/"): the gateway matched the
    issuer without it and then required `iss` to equal the slash-less form, so every such token was refused."""
    slashed = token(idp.keys[0], iss=idp.url + "/", aud=AUD, sub="sam", groups=["data-team"])
    plain = token(idp.keys[0], iss=idp.url, aud=AUD, sub="sam", groups=["data-team"])
    assert chat(gateway, slashed)
    assert chat(gateway, plain)
    sam = [r["user_id"] for r in audit(gateway, event="sign_in") if r["subject"] == "sam"]
    assert len(sam) == 2 and sam[0] == sam[1]  # one user, whichever form the IdP writes
