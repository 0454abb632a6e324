"""OIDC sign-in in a real browser (pip playwright driving Debian's chromium) against a real OIDC provider running
locally (pip oidc-provider-mock: authorization code, PKCE, nonce) and the real `llm-gateway` process: sign in
through the IdP, land in the dashboard in the teams the IdP's groups map to (two groups: two teams), create a key
(in each team) and use it; an IdP group mapped to `admin` gives the admin role; removed from a group at the IdP,
the next sign-in takes that team away and its key is refused while the other team's key works; a forged callback
(no flow, wrong state) is refused and audited."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess, launch
from tests.upstream import Upstream

playwright_sync = pytest.importorskip("playwright.sync_api")
oidc_mock = pytest.importorskip("oidc_provider_mock")
CHROMIUM = "/usr/bin/chromium"
MASTER = "mk-sso-oidc-test-9b1e"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    with oidc_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


def set_groups(idp: str, sub: str, groups: list[str]) -> None:
    r = httpx.put(f"{idp}/users/{sub}", json={"email": f"{sub}@example.com", "name": sub.title(), "groups": groups})
    assert r.status_code < 300, r.text


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, idp: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("sso-oidc")
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["gpt-4o-mini"]}],
              "database": {"url": f"sqlite:///{tmp}/sso.db", "ledger_flush_interval_s": 0.05},
              "sso": {"oidc": [{"name": "corp", "label": "Corp IdP", "issuer": idp, "client_id": "llm-gateway",
                                "client_secret": "s3cret-oidc", "scopes": ["openid", "email", "profile"],
                                "groups_claim": "groups", "end_session": True}],
                      "group_mapping": {"data-team": "team_data", "ml-team": "team_ml", "llm-admins": "admin"}}}
    gw = launch([], tmp, {"LLM_GATEWAY_MASTER_KEY": MASTER}, config)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def sign_in(browser: Any, gw: GatewayProcess, sub: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gw.url}/ui/login")
    page.click("text=Sign in with Corp IdP")
    page.wait_for_url(re.compile(r".*/oauth2/authorize.*"))
    assert "code_challenge_method=S256" in page.url and "nonce=" in page.url and "state=" in page.url
    page.fill("input[name=sub]", sub)
    page.click("button:has-text('Authorize')")
    page.wait_for_load_state("networkidle")
    assert re.match(r".*/ui/?$", page.url), (page.url, page.inner_text("body"))
    return page


def audit(gw: GatewayProcess, **params: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{gw.url}/api/v1/audit", params=params, headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_sign_in_team_key_and_group_removal(gateway: GatewayProcess, idp: str, browser: Any) -> None:
    set_groups(idp, "dana", ["data-team"])
    page = sign_in(browser, gateway, "dana")
    cookie = next(c for c in page.context.cookies() if c["name"] == "llm_gateway_ui")
    assert cookie["httpOnly"]
    page.goto(f"{gateway.url}/ui/keys")
    page.fill("input[name=alias]", "dana-laptop")
    page.click("text=Create key")
    secret = page.inner_text("#new-key")
    assert secret.startswith("sk-")
    assert "team_data" in page.inner_text("table")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert page.goto(f"{gateway.url}/ui/users").status == 403  # a user, not an admin
    page.context.close()

    set_groups(idp, "dana", [])  # the IdP takes dana out of the group
    page = sign_in(browser, gateway, "dana")
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "key_blocked"
    page.context.close()
    events = [(e["event"], e["method"]) for e in audit(gateway, event="sign_in")]
    assert events.count(("sign_in", "oidc")) >= 2
    changes = [e["detail"] for e in audit(gateway, event="team_change")]
    assert {"joined": [], "left": ["team_data"]} in changes


def create_key(page: Any, gw: GatewayProcess, alias: str, team: str) -> str:
    page.goto(f"{gw.url}/ui/keys")
    page.fill("input[name=alias]", alias)
    page.select_option("select[name=team_id]", team)
    page.click("text=Create key")
    secret: str = page.inner_text("#new-key")
    assert secret.startswith("sk-")
    return secret


def test_two_groups_give_two_teams_and_leaving_one_refuses_only_its_key(gateway: GatewayProcess, idp: str,
                                                                          browser: Any) -> None:
    set_groups(idp, "fay", ["data-team", "ml-team"])
    page = sign_in(browser, gateway, "fay")
    page.click("[data-link=me]")  # the user's own page lists every team
    assert page.locator("[data-list=teams] li").all_inner_texts() == ["team_data (primary)", "team_ml"]
    page.goto(f"{gateway.url}/ui/keys")
    assert page.locator("select[name=team_id] option").all_inner_texts() == ["team_data (primary)", "team_ml"]
    data_secret = create_key(page, gateway, "fay-data", "team_data")
    ml_secret = create_key(page, gateway, "fay-ml", "team_ml")
    rows = {r.locator("td").nth(0).inner_text(): r.locator("td").nth(3).inner_text()
            for r in page.locator("tbody tr").all()}
    assert rows == {"fay-data": "team_data", "fay-ml": "team_ml"}
    data = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=data_secret, max_retries=0)
    ml = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=ml_secret, max_retries=0)
    for client in (data, ml):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    # the form cannot be talked into a team fay is not in
    csrf = page.locator("input[name=csrf]").first.input_value()
    forged = page.context.request.post(f"{gateway.url}/ui/keys", form={"csrf": csrf, "alias": "x",
                                                                       "team_id": "team_ops"})
    assert forged.status == 403 and "not a member of team" in forged.text() and "team_ops" in forged.text()
    page.context.close()

    set_groups(idp, "fay", ["ml-team"])  # the IdP takes fay out of data-team only
    page = sign_in(browser, gateway, "fay")
    with pytest.raises(openai.AuthenticationError) as refused:
        data.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "key_blocked"
    ml.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    page.click("[data-link=me]")
    assert page.locator("[data-list=teams] li").all_inner_texts() == ["team_ml (primary)"]
    page.goto(f"{gateway.url}/ui/keys")
    assert page.locator("select[name=team_id] option").all_inner_texts() == ["team_ml (primary)"]
    page.context.close()
    users = httpx.get(f"{gateway.url}/api/v1/users", params={"team_id": "team_ml"},
                      headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    fay = next(u for u in users if u["email"] == "fay@example.com")
    assert (fay["team_id"], fay["teams"]) == ("team_ml", ["team_ml"])
    changes = [e["detail"] for e in audit(gateway, event="team_change", user_id=fay["id"])]
    assert changes == [{"joined": [], "left": ["team_data"]}, {"joined": ["team_data", "team_ml"], "left": []}]
    blocked = audit(gateway, event="key_blocked", user_id=fay["id"])
    assert [e["detail"]["team_id"] for e in blocked] == ["team_data"]


def test_an_admin_group_gives_the_admin_role_and_sign_out_is_audited(gateway: GatewayProcess, idp: str,
                                                                     browser: Any) -> None:
    set_groups(idp, "erin", ["llm-admins"])
    page = sign_in(browser, gateway, "erin")
    assert page.goto(f"{gateway.url}/ui/users").status == 200
    grants = [e for e in audit(gateway, event="role_change") if e["detail"].get("change") == "granted"]
    assert grants
    page.goto(f"{gateway.url}/ui/audit")
    assert page.locator("tr[data-event=sign_in]").count() >= 1
    assert page.locator("tr[data-event=role_change]").count() >= 1
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r".*/oauth2/end_session.*"))  # end_session: the IdP's session ends too
    assert page.context.request.get(f"{gateway.url}/ui/audit", max_redirects=0).status == 303  # signed out
    assert audit(gateway, event="sign_out")
    page.context.close()


def test_a_sign_in_that_drops_admin_demotes_open_sessions_and_sign_out_ends_copies(
        gateway: GatewayProcess, idp: str, browser: Any) -> None:
    set_groups(idp, "gus", ["llm-admins", "data-team"])
    laptop = sign_in(browser, gateway, "gus")
    assert laptop.goto(f"{gateway.url}/ui/users").status == 200
    cookie = next(c for c in laptop.context.cookies() if c["name"] == "llm_gateway_ui")["value"]
    copy = httpx.Client(base_url=f"{gateway.url}/ui", headers={"cookie": f"llm_gateway_ui={cookie}"})
    assert copy.get("/users").status_code == 200

    set_groups(idp, "gus", ["data-team"])  # the IdP takes gus out of the admins' group
    phone = sign_in(browser, gateway, "gus")  # the group sync of this sign-in applies to the laptop's session
    assert phone.goto(f"{gateway.url}/ui/users").status == 403
    assert laptop.goto(f"{gateway.url}/ui/users").status == 403
    assert copy.get("/users").status_code == 403 and copy.get("/keys").status_code == 200  # still gus, a user
    phone.context.close()

    laptop.goto(f"{gateway.url}/ui/keys")
    laptop.click("button:has-text('Sign out')")
    laptop.wait_for_url(re.compile(r".*/oauth2/end_session.*"))
    refused = copy.get("/keys")  # the copy taken before sign-out is signed out too
    assert refused.status_code == 303 and refused.headers["location"].endswith("/ui/login")
    laptop.context.close()


def test_forged_callbacks_are_refused_and_audited(gateway: GatewayProcess) -> None:
    r = httpx.get(f"{gateway.url}/ui/sso/oidc/corp/callback", params={"code": "x", "state": "y"})
    assert r.status_code == 401 and "not started here" in r.text
    with httpx.Client(base_url=gateway.url) as browserless:
        start = browserless.get("/ui/sso/oidc/corp/start")
        assert start.status_code == 303
        r = browserless.get("/ui/sso/oidc/corp/callback", params={"code": "x", "state": "wrong"})
        assert r.status_code == 401 and "state does not match" in r.text
    reasons = [e["detail"]["reason"] for e in audit(gateway, event="sign_in_refused")]
    assert any("state does not match" in r for r in reasons)
    assert "s3cret-oidc" not in gateway.log()


def test_llm_gateway_login_gets_a_short_lived_personal_key(gateway: GatewayProcess, idp: str, browser: Any) -> None:
    set_groups(idp, "hugo", ["data-team"])
    cli = subprocess.Popen([sys.executable, "-m", "llm_gateway", "login", "--url", gateway.url, "--no-browser",
                            "--name", "hugo-laptop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert cli.stdout is not None
    first = cli.stdout.readline()
    url = first.split("Open ", 1)[1].strip()
    code = cli.stdout.readline().rsplit(" ", 1)[1].strip(".\n")
    page = browser.new_context().new_page()
    page.goto(url)
    page.click("text=Sign in with Corp IdP")
    page.fill("input[name=sub]", "hugo")
    page.click("button:has-text('Authorize')")
    page.wait_for_load_state("networkidle")
    assert "/sso/device" in page.url and page.locator("input[name=user_code]").input_value() == code.replace("-", "")
    page.click("button:has-text('Approve')")
    page.wait_for_selector("h1:has-text('Approved')", timeout=10_000)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    key = re.search(r"OPENAI_API_KEY=(\S+)", out)
    assert key is not None
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key.group(1), max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    keys = httpx.get(f"{gateway.url}/api/v1/keys", headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    issued = next(k for k in keys if k["alias"] == "login: hugo-laptop")
    assert issued["team_id"] == "team_data"
    assert 0 < issued["expires_at"] / 1000 - time.time() <= 12 * 3600
    assert audit(gateway, event="key_issued")
    page.context.close()
    # a device code is good for one key, and an unknown one gets the OAuth error
    r = httpx.post(f"{gateway.url}/ui/sso/device/token",
                   data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "nope"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
