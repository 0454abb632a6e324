"""The dashboard in a real browser (pip playwright driving Debian's chromium) against a real `llm-gateway` process:
sign in, create a team, a key limited to two models with an rpm limit, send requests through the gateway with the
OpenAI SDK, see them in the chart, the log and the detail, revoke; a user sees only their own; a forged form (no
CSRF token) is refused and an alias of HTML stays inert; an admin sets a user's teams and a team admin sees the
members of its team whose primary team is another; no console errors. Screenshots of each page go to
tests/artifacts/dashboard/ (git-ignored)."""

from __future__ import annotations

import re
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
CHROMIUM = "/usr/bin/chromium"
MASTER = "mk-dashboard-test-7f3a"
XSS = '<img src=x onerror="document.title=\'pwned\'">'
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("dashboard")
    config = {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["gpt-4o", "gpt-4o-mini", "o3-mini"]}],
              "database": {"url": f"sqlite:///{tmp}/dash.db", "ledger_flush_interval_s": 0.05},
              "cache": {"enabled": True}}
    gw = launch([], tmp, {"LLM_GATEWAY_MASTER_KEY": MASTER}, config)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Page:
    """One browser context (its own cookies) that records console errors and takes screenshots."""

    def __init__(self, browser: Any, gw: GatewayProcess, who: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.text} {m.location.get('url')}")
                     if m.type == "error" and not self.expected(m.location.get("url", "")) else None)
        self.expect: set[str] = set()  # pages that answer an error status on purpose (403, 404)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.base = f"{gw.url}/ui"
        self.who = who
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def expected(self, url: str) -> bool:
        return any(url.endswith(path) for path in self.expect)

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")
        return response

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{self.who}-{name}.png"), full_page=True)

    def sign_in(self, secret: str) -> None:
        self.go("/login")
        self.page.fill("#secret", secret)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r".*/ui/$"))


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_an_admin_runs_the_gateway_and_a_user_sees_only_their_own(gateway: GatewayProcess, browser: Any) -> None:
    admin = Page(browser, gateway, "admin")
    assert admin.go("/").url.endswith("/ui/login")  # signed out: to the sign-in page
    admin.shot("login")
    admin.sign_in(MASTER)
    cookie = next(c for c in admin.context.cookies() if c["name"] == "llm_gateway_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    # a team with a budget
    admin.go("/teams")
    admin.page.fill("input[name=id]", "research")
    admin.page.fill("input[name=name]", "Research")
    admin.page.fill("input[name=budget_usd]", "50")
    admin.page.click("text=Create team")
    admin.page.wait_for_url(re.compile(r".*/ui/teams/research$"))
    admin.shot("team")

    # a key for it: two models, an rpm limit, an alias of HTML; its secret is shown once
    admin.go("/keys")
    admin.page.fill("input[name=alias]", XSS)
    admin.page.fill("input[name=team_id]", "research")
    admin.page.fill("input[name=rpm_limit]", "100")
    admin.page.check("input[name=models][value=gpt-4o]")
    admin.page.check("input[name=models][value=gpt-4o-mini]")
    admin.page.click("text=Create key")
    secret = admin.page.inner_text("#new-key")
    assert secret.startswith("sk-")
    admin.shot("key-created")
    assert admin.page.title() != "pwned" and admin.page.locator("main img").count() == 0
    assert XSS in admin.page.inner_text("table")  # shown as text
    admin.go("/keys")
    assert secret not in admin.page.content()  # never shown again

    # requests through the gateway with that key: allowed models answer, a third model is refused with 403
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4o"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="o3-mini", messages=[{"role": "user", "content": "hi"}])

    # the overview counts them (rollups) and the chart draws them
    def overview_count() -> bool:
        admin.go("/")
        return admin.page.inner_text("[data-stat=today-requests]") == "4"
    assert wait_for(overview_count), admin.page.inner_text("main")
    admin.page.select_option("select[name=split]", "model")
    admin.page.wait_for_selector("#chart[data-loaded='1'][data-series*='gpt-4o-mini']")
    admin.page.select_option("select[name=metric]", "requests")
    admin.page.wait_for_selector("#chart[data-total='4']")  # (wait_for_function: the CSP forbids eval)
    admin.shot("overview")
    export = admin.context.request.get(f"{admin.base}/export.csv?view=series&split=model&metric=requests&range=24h")
    assert export.ok and "gpt-4o-mini" in export.text().splitlines()[0]

    # the request log, and a row's detail loaded on click: the 403 says why
    admin.go("/logs?status=403")
    rows = admin.page.locator("#log tbody tr")
    assert rows.count() == 1
    rows.first.locator("button").click()
    admin.page.wait_for_selector("#detail [data-stat=why]")
    why = admin.page.inner_text("#detail [data-stat=why]")
    assert "o3-mini" in why or "not allowed" in why, why
    admin.shot("log-detail")
    fetched: list[str] = []
    admin.page.on("request", lambda r: fetched.append(r.url))
    admin.go("/logs")
    assert admin.page.locator("#log tbody tr").count() == 4
    assert [u for u in fetched if "/ui/static/" not in u] == [f"{admin.base}/logs"]  # one request a page

    # the key's page: models and rpm limit; the providers page; the cache is cleared
    admin.go("/keys")
    admin.page.locator("table a").first.click()
    admin.page.wait_for_load_state("networkidle")
    assert admin.page.inner_text("[data-stat=models]") == "gpt-4o, gpt-4o-mini"
    admin.shot("key")
    admin.go("/providers")
    admin.page.once("dialog", lambda d: d.accept())
    admin.page.click("text=Clear the cache")
    admin.page.wait_for_selector("text=Cleared")
    admin.shot("providers")

    # a forged form without the CSRF token is refused, with the session cookie attached
    forged = admin.context.request.post(f"{admin.base}/teams", form={"id": "forged"})
    assert forged.status == 403
    assert httpx.get(f"{gateway.url}/api/v1/teams/forged", headers={"authorization": f"Bearer {MASTER}"}
                     ).status_code == 404

    # a user with a token: sees only their own keys and usage, creates a self-service key
    admin.go("/users")
    admin.page.fill("input[name=id]", "alice")
    admin.page.fill("input[name=max_keys]", "1")
    admin.page.click("text=Create user")
    token = admin.page.inner_text("#new-token")
    user = Page(browser, gateway, "user")
    user.sign_in(token)
    assert user.page.inner_text("[data-stat=today-requests]") == "0"
    assert user.page.locator("select[name=split]").count() == 0
    user.go("/keys")
    assert "no keys" in user.page.inner_text("table")
    user.page.fill("input[name=alias]", "alice-laptop")
    user.page.click("text=Create key")
    alice_key = user.page.inner_text("#new-key")
    user.go("/keys")
    user.page.fill("input[name=alias]", "second")
    user.expect.add("/ui/keys")  # the refusal below answers 400
    user.page.click("text=Create key")
    assert "most allowed" in user.page.inner_text("[role=alert]")  # the cap, from the admin API's own handler
    openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=alice_key, max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert wait_for(lambda: user.go("/logs") and user.page.locator("#log tbody tr button").count() == 1)
    user.shot("logs")
    user.expect.add("/ui/providers")
    assert user.go("/providers").status == 403
    assert user.go("/logs?key_id=" + "x").ok and user.page.locator("#log tbody tr button").count() == 0

    # revoke the admin's key: the gateway refuses it from then on
    admin.go("/keys")
    row = admin.page.locator("tr", has_text="research").first
    admin.page.once("dialog", lambda d: d.accept())
    row.locator("text=Revoke").click()
    admin.page.wait_for_load_state("networkidle")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    admin.page.click("text=Sign out")
    admin.page.wait_for_url(re.compile(r".*/ui/login$"))
    assert admin.go("/keys").url.endswith("/ui/login")
    assert admin.errors == [] and user.errors == []


def test_keyboard_phone_zoom_and_a_root_path(gateway: GatewayProcess, browser: Any) -> None:
    # behind a proxy that mounts the gateway under /llm: every link, form and asset carries the prefix
    page = httpx.get(f"{gateway.url}/ui/login", headers={"x-forwarded-prefix": "/llm"}).text
    assert 'action="/llm/ui/login"' in page and 'src="/llm/ui/static/htmx.min.js?v=' in page
    assert "/ui/static" not in page.replace("/llm/ui/static", "")
    assert "javascript" in httpx.get(f"{gateway.url}/ui/static/htmx.min.js").headers["content-type"]
    csp = httpx.get(f"{gateway.url}/ui/login").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp

    # a phone, and a laptop at 200 % zoom (half the CSS pixels): nothing wider than the screen
    for who, viewport in (("phone", {"width": 390, "height": 844}), ("zoom200", {"width": 640, "height": 450})):
        p = Page(browser, gateway, who)
        p.context.set_default_timeout(15_000)
        p.page.set_viewport_size(viewport)
        p.sign_in(MASTER)
        p.page.wait_for_selector("#chart[data-loaded='1']")
        overflow = p.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{who}: {overflow}px wider than the screen"
        p.shot("overview")
        # the keyboard: the first Tab reaches the skip link, Enter moves to the content, Tab on to its controls
        p.page.keyboard.press("Tab")
        assert p.page.evaluate("document.activeElement.textContent") == "Skip to content"
        p.go("/keys")
        for _ in range(12):
            p.page.keyboard.press("Tab")
            if p.page.evaluate("document.activeElement.name") == "alias":
                break
        else:
            raise AssertionError("the key form is not reachable with Tab")
        p.page.keyboard.type("from-keyboard")
        assert p.errors == []
        p.context.close()


def form_token(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_a_team_admin_manages_only_their_team(gateway: GatewayProcess) -> None:
    api = httpx.Client(base_url=f"{gateway.url}/api/v1/", headers={"authorization": f"Bearer {MASTER}"})
    for team in ("red", "blue"):
        api.post("teams", json={"id": team})
    lead = api.post("users", json={"id": "lead", "team_id": "red", "role": "team_admin"}).json()
    api.post("users", json={"id": "bob", "team_id": "blue"})
    blue_key = api.post("keys", json={"alias": "blue-key", "team_id": "blue"}).json()["id"]

    ui = httpx.Client(base_url=f"{gateway.url}/ui")
    signed = ui.post("/login", data={"csrf": form_token(ui.get("/login").text), "secret": lead["token"]})
    assert signed.status_code == 303
    page = ui.get("/keys")
    assert "blue-key" not in page.text
    created = ui.post("/keys", data={"csrf": form_token(page.text), "alias": "red-key", "team_id": "blue"})
    assert created.status_code == 201
    red_key = created.text.split('href="/ui/keys/', 1)[1].split('"', 1)[0]
    assert api.get(f"keys/{red_key}").json()["team_id"] == "red"  # their team, whatever the form said
    assert ui.get(f"/keys/{blue_key}").status_code == 404
    refused = ui.post(f"/keys/{blue_key}/revoke", data={"csrf": form_token(page.text)})
    assert refused.status_code == 404 and api.get(f"keys/{blue_key}").status_code == 200
    assert ui.post("/teams", data={"csrf": form_token(page.text), "id": "mine"}).status_code == 403
    users = ui.get("/users").text
    assert "lead" in users and "bob" not in users
    assert ui.get("/teams/blue").status_code == 403 and ui.get("/teams/red").status_code == 200


def test_a_team_admin_sees_members_whose_primary_team_is_another(gateway: GatewayProcess, browser: Any) -> None:
    api = httpx.Client(base_url=f"{gateway.url}/api/v1/", headers={"authorization": f"Bearer {MASTER}"})
    for team in ("north", "south"):
        api.post("teams", json={"id": team})
    lead = api.post("users", json={"id": "north-lead", "team_id": "north", "role": "team_admin"}).json()
    api.post("users", json={"id": "mia", "team_id": "south"})
    api.post("users", json={"id": "sol", "team_id": "south"})

    admin = Page(browser, gateway, "admin-teams")
    admin.sign_in(MASTER)
    admin.go("/users/mia")
    admin.page.fill("input[name=teams]", "south, north")
    admin.page.click("text=Set teams")
    admin.page.wait_for_url(re.compile(r".*/ui/users/mia$"))
    assert admin.page.locator("[data-list=teams] li").all_inner_texts() == ["south (primary)", "north"]
    assert api.get("users/mia/teams").json()["teams"] == ["south", "north"]
    admin.expect.add("/users/mia/teams")  # answers 422 on purpose next
    admin.page.fill("input[name=teams]", "south, nowhere")
    admin.page.click("text=Set teams")
    assert "no team 'nowhere'" in admin.page.inner_text("main")
    assert admin.errors == []
    admin.context.close()

    ui = httpx.Client(base_url=f"{gateway.url}/ui")
    assert ui.post("/login", data={"csrf": form_token(ui.get("/login").text), "secret": lead["token"]}
                   ).status_code == 303
    users = ui.get("/users").text
    assert "mia" in users and "sol" not in users  # mia is in north too; sol only in south
    assert ui.get("/users/mia").status_code == 200 and ui.get("/users/sol").status_code == 404
    assert "mia" in ui.get("/teams/north").text
    api.put("users/mia/teams", json={"teams": ["south"]})  # out of north: the lead no longer sees mia
    assert ui.get("/users/mia").status_code == 404 and "mia" not in ui.get("/users").text
