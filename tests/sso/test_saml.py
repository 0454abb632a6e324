"""SAML sign-in against pysaml2's IdP running locally and the real `llm-gateway` process: in Chromium, sign in,
land in the teams the groups map to (two), create a key in each, use them; removed from one group, the next sign-in
blocks that team's key only, and removed from the other, the other's.
Negative: a tampered response, a replayed assertion, a wrong audience, an unsigned response, a SHA-1 signature,
a forged RelayState: all refused with a clear error and an audit row. The SP metadata is served."""

from __future__ import annotations

import base64
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess, launch
from tests.sso.saml_idp import SHA1, SamlIdp
from tests.upstream import Upstream

pytest.importorskip("saml2")
pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed (scripts/test.sh)")
CHROMIUM = "/usr/bin/chromium"
MASTER = "mk-sso-saml-test-5d0c"
NAME = "corp-saml"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamlIdp]:
    server = SamlIdp(tmp_path_factory.mktemp("saml-idp")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, idp: SamlIdp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("sso-saml")
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["gpt-4o-mini"]}],
              "database": {"url": f"sqlite:///{tmp}/sso.db", "ledger_flush_interval_s": 0.05},
              "sso": {"saml": [{"name": NAME, "label": "Corp SAML", "metadata_file": str(idp.metadata_file),
                                "entity_id": idp.entity_id}],
                      "group_mapping": {"data-team": "team_data", "ml-team": "team_ml", "llm-admins": "admin"}}}
    gw = launch([], tmp, {"LLM_GATEWAY_MASTER_KEY": MASTER}, config)
    metadata = httpx.get(f"{gw.url}/ui/sso/saml/{NAME}/metadata")
    assert metadata.status_code == 200 and "AssertionConsumerService" in metadata.text
    idp.trust_sp(metadata.text)
    yield gw
    gw.stop()


BROWSER = httpx.Client()  # one browser: the sign-in it starts keeps its cookie, as a real one does


def start(gw: GatewayProcess, browser: httpx.Client = BROWSER) -> tuple[str, str]:
    """The AuthnRequest and RelayState the gateway sends the browser to the IdP with."""
    r = browser.get(f"{gw.url}/ui/sso/saml/{NAME}/start")
    assert r.status_code == 303, r.text
    query = parse_qs(urlsplit(r.headers["location"]).query)
    return query["SAMLRequest"][0], query["RelayState"][0]


def post(gw: GatewayProcess, response: str, relay: str, browser: httpx.Client = BROWSER) -> httpx.Response:
    """The IdP's POST to the ACS from `browser`, and the gateway's redirects as far as the dashboard."""
    r = browser.post(f"{gw.url}/ui/sso/saml/{NAME}/acs", data={"SAMLResponse": response, "RelayState": relay})
    while r.status_code == 303 and "/ui/sso/" in r.headers["location"]:
        r = browser.get(httpx.URL(gw.url).join(r.headers["location"]))
    return r


def refusals(gw: GatewayProcess, at_least: int = 0) -> list[str]:
    """The SAML refusals in the audit table (written off the request path: wait for `at_least` of them)."""
    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(f"{gw.url}/api/v1/audit", params={"event": "sign_in_refused"},
                      headers={"authorization": f"Bearer {MASTER}"})
        found = [e["detail"]["reason"] for e in r.json()["data"] if e["method"] == "saml"]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_valid_response_signs_in_once_and_a_replay_is_refused(gateway: GatewayProcess, idp: SamlIdp) -> None:
    request, relay = start(gateway)
    response = idp.respond(request, "frank")
    first = post(gateway, response, relay)
    assert first.status_code == 303 and first.headers["location"].endswith("/ui"), first.text
    assert "llm_gateway_ui=" in first.headers["set-cookie"]
    again = post(gateway, response, relay)
    assert again.status_code == 401 and "already used" in again.text
    assert any("already used" in r for r in refusals(gateway, 1))


def test_a_response_signs_in_only_where_its_sign_in_started(gateway: GatewayProcess,
                                                           idp: SamlIdp) -> None:
    """Login CSRF: mallory starts a sign-in, gets the IdP's response for herself and has the victim's browser post
    it (a cross-site form): the victim must not end up in mallory's account (her keys, her request log)."""
    idp.users["mallory"] = []
    with httpx.Client() as mallory, httpx.Client() as victim:
        request, relay = start(gateway, mallory)
        r = post(gateway, idp.respond(request, "mallory"), relay, victim)
        assert r.status_code == 401 and "not started in this browser" in r.text, r.text
        assert "llm_gateway_ui" not in victim.cookies
    assert any("not started in this browser" in reason for reason in refusals(gateway, 1))


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"audience": "https://another-sp.example.com"}, "AudienceRestrictions conditions not satisfied"),
    ({"algorithms": SHA1}, "SHA-1"),
    ({"sign_response": False, "sign_assertion": False}, "Neither the response nor the assertions are signed"),
    ({"expired": True}, "has expired or is not yet valid"),  # NotOnOrAfter 10 minutes ago
])
def test_bad_responses_are_refused_and_audited(gateway: GatewayProcess, idp: SamlIdp, kwargs: dict[str, Any],
                                               reason: str) -> None:
    request, relay = start(gateway)
    before = len(refusals(gateway))
    r = post(gateway, idp.respond(request, "mallory", **kwargs), relay)
    assert r.status_code == 401 and reason in r.text, r.text
    assert "Traceback" not in r.text
    assert len(refusals(gateway, before + 1)) == before + 1


def test_a_tampered_response_is_refused(gateway: GatewayProcess, idp: SamlIdp) -> None:
    idp.users["mallory"] = []
    request, relay = start(gateway)
    xml = base64.b64decode(idp.respond(request, "mallory")).decode()
    forged = xml.replace("mallory@example.com", "admin@example.com")
    assert forged != xml
    before = len(refusals(gateway))
    r = post(gateway, base64.b64encode(forged.encode()).decode(), relay)
    assert r.status_code == 401 and "not accepted" in r.text
    assert len(refusals(gateway, before + 1)) == before + 1
    r = post(gateway, idp.respond(start(gateway)[0], "mallory"), relay[:-4] + "AAAA")
    assert r.status_code == 401 and "not started here" in r.text


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser_sign_in_team_key_and_group_removal(gateway: GatewayProcess, idp: SamlIdp) -> None:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    idp.users["gina"] = ["data-team", "ml-team"]
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])

        def sign_in() -> Any:
            page = browser.new_context().new_page()
            page.goto(f"{gateway.url}/ui/login")
            page.click("text=Sign in with Corp SAML")
            page.fill("input[name=user]", "gina")
            page.click("text=Sign in at the IdP")
            page.wait_for_load_state("networkidle")
            assert re.match(r".*/ui/?$", page.url), (page.url, page.inner_text("body"))
            return page

        def create_key(page: Any, alias: str, team: str | None) -> openai.OpenAI:
            page.goto(f"{gateway.url}/ui/keys")
            page.fill("input[name=alias]", alias)
            if team is not None:
                page.select_option("select[name=team_id]", team)
            page.click("text=Create key")
            secret = page.inner_text("#new-key")
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            return client

        page = sign_in()
        data = create_key(page, "gina-laptop", None)  # the primary team: the first mapped one
        ml = create_key(page, "gina-ml", "team_ml")
        assert "team_data" in page.inner_text("table") and "team_ml" in page.inner_text("table")
        page.context.close()
        for groups, refused_client, working in ((["ml-team"], data, ml), ([], ml, None)):
            idp.users["gina"] = groups
            sign_in().context.close()
            with pytest.raises(openai.AuthenticationError) as refused:
                refused_client.chat.completions.create(model="gpt-4o-mini",
                                                       messages=[{"role": "user", "content": "hi"}])
            assert refused.value.code == "key_blocked"
            if working is not None:  # the team the user is still in keeps its key
                working.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        browser.close()
