"""Authorization through a real gateway, tried the ways an attacker with a valid but restricted key would: every
`x-gateway` override form, aliases, `PROVIDER/MODEL`, a failing provider forcing a fallback, a hedge, a cached
answer, /v1/messages, count_tokens, embeddings, pass-through and the model list. Each asserts the status and
what the ledger recorded (the model asked for, the deployment that answered)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from tests.conftest import GatewayProcess, launch
from tests.upstream import Upstream, free_port

MASTER = "mk-authz-test-0c5e7a"
MESSAGES = [{"role": "user", "content": "Say hello"}]


class Gw:
    """The gateway, its database and the keys made for these tests."""

    def __init__(self, proc: GatewayProcess, db: Path, upstream: Upstream) -> None:
        self.proc = proc
        self.db = db
        self.upstream = upstream
        self.keys: dict[str, str] = {}

    def key(self, name: str, **fields: Any) -> str:
        r = httpx.post(f"{self.proc.url}/api/v1/keys", headers={"authorization": f"Bearer {MASTER}"},
                       json={"alias": name, **fields})
        assert r.status_code == 201, r.text
        self.keys[name] = r.json()["key"]
        return self.keys[name]

    def post(self, path: str, key: str, body: dict[str, Any], headers: dict[str, str] | None = None,
             ) -> tuple[httpx.Response, str]:
        rid = uuid.uuid4().hex
        r = httpx.post(f"{self.proc.v1}/{path}", json=body, timeout=20,
                       headers={"authorization": f"Bearer {key}", "x-request-id": rid, **(headers or {})})
        return r, rid

    def chat(self, key: str, model: str, headers: dict[str, str] | None = None, **body: Any,
             ) -> tuple[httpx.Response, str]:
        return self.post("chat/completions", key, {"model": model, "messages": MESSAGES, **body}, headers)

    def row(self, rid: str) -> dict[str, Any]:
        """The ledger row of one request (written in the background: waits for it)."""
        deadline = time.monotonic() + 10
        while True:
            with sqlite3.connect(self.db, timeout=30) as conn:
                conn.row_factory = sqlite3.Row
                found = conn.execute("SELECT * FROM gw_usage WHERE request_id = ?", (rid,)).fetchone()
            if found is not None:
                return dict(found)
            assert time.monotonic() < deadline, f"no ledger row for {rid}"
            time.sleep(0.05)

    def upstream_models(self, since: int) -> list[str]:
        return [str((r.body or {}).get("model")) for r in self.upstream.requests[since:] if isinstance(r.body, dict)]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gw]:
    tmp = tmp_path_factory.mktemp("authz")
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: a provider that always fails
    up = {"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1", "api_key": "sk-up",
          "models": ["*"], "options": {"passthrough": True}}
    config = {
        "providers": [up, {"name": "down", "type": "openai-compatible", "base_url": down, "api_key": "sk-down",
                           "models": ["down-model"], "timeouts": {"connect": 1}}],
        "models": {
            "cheap": {"deployments": [{"provider": "up", "model": "gpt-4o-mini"}]},
            "watched": {"deployments": [{"provider": "up", "model": "gpt-4.1"}]},
            "watched-too": {"deployments": [{"provider": "up", "model": "gpt-4.1"}]},
            "big": {"deployments": [{"provider": "up", "model": "gpt-4o"}]},
            # almost always gpt-4o; the part a key limited to gpt-4o-mini may use is gpt-4o-mini alone
            # (named: a deployment's state and weight are shared by the routes that name the same one)
            "pool": {"deployments": [{"provider": "up", "model": "gpt-4o", "weight": 1000, "name": "pool-4o"},
                                     {"provider": "up", "model": "gpt-4o-mini", "weight": 0.001,
                                      "name": "pool-mini"}]},
            # a failing provider first; the configured fallbacks lead to a forbidden model, then an allowed one
            "flaky": {"deployments": [{"provider": "down", "model": "gpt-4o-mini"}], "fallbacks": ["big", "cheap"]},
            # slow first; the hedge would go to gpt-4o (next by cost) unless that is skipped
            "hedged": {"strategy": "cost", "hedge": {"enabled": True, "delay_s": 0.05},
                       "deployments": [{"provider": "up", "model": "ttft-600", "cost": 1, "name": "h-slow"},
                                       {"provider": "up", "model": "gpt-4o", "cost": 2, "name": "h-4o"},
                                       {"provider": "up", "model": "gpt-4o-mini", "cost": 3, "name": "h-mini"}]},
        },
        "database": {"url": f"sqlite:///{tmp / 'authz.db'}", "ledger_flush_interval_s": 0.05},
        "auth": {"master_key": MASTER, "key_cache_ttl_s": 0.3},
        "cache": {"enabled": True, "scope": "global"},
        # the "guarded" key's own guardrails: on the answer ("fox" is in every answer of the test upstream),
        # and beside the call
        "guardrails": [{"name": "no-fox", "type": "keywords", "mode": ["post_call"], "keywords": ["fox"]},
                       {"name": "beside", "type": "keywords", "mode": ["during_call"], "keywords": ["besideword"]}],
        # and the model "watched"'s, however a request reaches its deployment
        "guardrail_policy": {"keys": {"guarded": ["no-fox", "beside"]}, "models": {"watched": ["no-fox"]}},
    }
    proc = launch([], tmp, config=config)
    g = Gw(proc, tmp / "authz.db", upstream)
    g.key("cheap-only", models=["cheap"])
    g.key("cheap-steering", models=["cheap", "flaky"], allow_overrides=True)
    g.key("slow-or-cheap", models=["ttft-600", "cheap"])
    g.key("cheap-passthrough", models=["cheap"], allow_passthrough=True)
    g.key("guarded", models=["cheap"])
    yield g
    proc.stop(signal.SIGKILL)


# -- client-side routing overrides: a permission, in every form

OVERRIDE_FORMS: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("fallbacks", {"x-gateway-fallbacks": "big"}, {}),
    ("provider", {"x-gateway-provider": "down"}, {}),
    ("retries", {"x-gateway-retries": "3"}, {}),
    ("hedge", {"x-gateway-hedge": "0.01"}, {}),
    ("fallbacks", {"x-gateway": '{"fallbacks": ["big"]}'}, {}),
    ("provider", {"x-gateway": '{"provider": "down"}'}, {}),
    ("fallbacks", {}, {"x-gateway": {"fallbacks": ["big"]}}),
    ("provider", {}, {"x-gateway": {"provider": "down"}}),
    ("hedge", {}, {"x-gateway": {"hedge": True}}),
    ("retries", {}, {"x-gateway": {"retries": 0}}),
]


@pytest.mark.parametrize(("name", "headers", "body"), OVERRIDE_FORMS)
def test_routing_overrides_need_allow_overrides(gw: Gw, name: str, headers: dict[str, str],
                                                body: dict[str, Any]) -> None:
    before = len(gw.upstream.requests)
    r, rid = gw.chat(gw.keys["cheap-only"], "cheap", headers, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "override_not_allowed" and error["param"] == f"x-gateway.{name}"
    assert "allow_overrides" in error["message"]
    assert gw.upstream_models(before) == []  # refused, not ignored: nothing went upstream
    row = gw.row(rid)
    assert row["status"] == 400 and row["deployment"] == "" and row["model"] == "cheap"


def test_open_options_and_a_shorter_timeout_need_no_permission(gw: Gw) -> None:
    key = gw.keys["cheap-only"]
    for headers, body in (({"x-gateway-cache": "false"}, {}),
                          ({"x-gateway-timeout": "5", "x-gateway-cache": "false"}, {}),
                          ({}, {"x-gateway": {"cache": False, "metadata": {"ticket": "T-1"}, "timeout": 5}}),
                          ({"x-gateway": '{"metadata": {"a": 1}, "cache": false}'}, {})):
        r, rid = gw.chat(key, "cheap", headers, **body)
        assert r.status_code == 200, r.text
        assert gw.row(rid)["deployment"] == "up/gpt-4o-mini"


def test_the_attack_of_the_issue_gets_nothing_forbidden(gw: Gw) -> None:
    """A failing pinned provider plus a fallback to a forbidden model: 400 without the permission, and with it
    the forbidden deployments are skipped: 403 naming the model, nothing upstream."""
    attack = {"x-gateway-fallbacks": "gpt-4o", "x-gateway-provider": "down"}
    before = len(gw.upstream.requests)
    r, _ = gw.chat(gw.keys["cheap-only"], "cheap", attack)
    assert r.status_code == 400 and r.json()["error"]["code"] == "override_not_allowed"
    r, rid = gw.chat(gw.keys["cheap-steering"], "cheap", attack)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert "'cheap'" in r.json()["error"]["message"]
    r2, _ = gw.chat(gw.keys["cheap-steering"], "cheap", {}, **{"x-gateway": {"fallbacks": ["big"],
                                                                               "provider": "down"}})
    assert r2.status_code == 403
    assert gw.upstream_models(before) == []
    assert gw.row(rid)["status"] == 403


def test_models_are_decided_on_the_deployment_called(gw: Gw) -> None:
    key = gw.keys["cheap-only"]
    for model in ("gpt-4o", "up/gpt-4o", "big", "down/gpt-4o-mini", "down-model", "flaky"):
        r, rid = gw.chat(key, model)
        assert r.status_code == 403, (model, r.text)
        assert r.json()["error"]["code"] == "model_not_allowed" and repr(model) in r.json()["error"]["message"]
        assert gw.row(rid)["deployment"] == ""
    # The same deployment under another name is the same decision.
    for model in ("cheap", "up/gpt-4o-mini", "gpt-4o-mini"):
        r, rid = gw.chat(key, model, {"x-gateway-cache": "false"})
        assert r.status_code == 200, (model, r.text)
        row = gw.row(rid)
        assert (row["model"], row["provider"], row["deployment"], row["upstream_model"]) == (
            model, "up", "up/gpt-4o-mini", "gpt-4o-mini")
    # An alias whose deployments are partly allowed: only the allowed one is ever called.
    before = len(gw.upstream.requests)
    for _ in range(5):
        r, rid = gw.chat(key, "pool", {"x-gateway-cache": "false"})
        assert r.status_code == 200 and gw.row(rid)["upstream_model"] == "gpt-4o-mini"
    assert set(gw.upstream_models(before)) == {"gpt-4o-mini"}


def test_a_failing_provider_falls_back_past_a_forbidden_model(gw: Gw) -> None:
    before = len(gw.upstream.requests)
    r, rid = gw.chat(gw.keys["cheap-steering"], "flaky", {"x-gateway-cache": "false"})
    assert r.status_code == 200, r.text
    assert r.headers["x-gateway-deployment"] == "up/gpt-4o-mini"
    assert gw.upstream_models(before) == ["gpt-4o-mini"]  # `big` (gpt-4o) was skipped, not called
    row = gw.row(rid)
    assert (row["model"], row["deployment"], row["upstream_model"]) == ("flaky", "up/gpt-4o-mini", "gpt-4o-mini")
    # With only forbidden fallbacks left, the failure is the answer: still nothing forbidden called.
    r, rid = gw.chat(gw.keys["cheap-steering"], "flaky", {"x-gateway-fallbacks": "big"})
    assert r.status_code == 502
    assert "gpt-4o" not in gw.upstream_models(before)
    row = gw.row(rid)
    assert (row["deployment"], row["upstream_model"], row["status"]) == ("down/gpt-4o-mini", "gpt-4o-mini", 502)


def test_a_hedge_goes_only_to_an_allowed_deployment(gw: Gw) -> None:
    before = len(gw.upstream.requests)
    r, rid = gw.chat(gw.keys["slow-or-cheap"], "hedged", {"x-gateway-cache": "false"})
    assert r.status_code == 200, r.text
    sent = gw.upstream_models(before)
    assert "gpt-4o" not in sent and sent[:2] == ["ttft-600", "gpt-4o-mini"]
    row = gw.row(rid)
    assert (row["model"], row["deployment"], row["upstream_model"]) == ("hedged", "h-mini", "gpt-4o-mini")
    # the master key may use all three: there the hedge goes to the next one, gpt-4o
    before = len(gw.upstream.requests)
    r, rid = gw.chat(MASTER, "hedged", {"x-gateway-cache": "false"})
    assert r.status_code == 200 and gw.upstream_models(before)[:2] == ["ttft-600", "gpt-4o"]


def test_a_cached_answer_is_served_only_to_whom_may_use_its_deployment(gw: Gw) -> None:
    body = {"messages": [{"role": "user", "content": f"cache me {uuid.uuid4().hex}"}]}
    r, _ = gw.post("chat/completions", MASTER, {"model": "pool", **body})
    assert r.headers["x-cache"] == "MISS" and r.json()["model"] == "gpt-4o"
    r, _ = gw.post("chat/completions", MASTER, {"model": "pool", **body})
    assert r.headers["x-cache"] == "HIT" and r.json()["model"] == "gpt-4o"
    # The same request by a key that may use only gpt-4o-mini: never the answer gpt-4o gave.
    r, rid = gw.post("chat/completions", gw.keys["cheap-only"], {"model": "pool", **body})
    assert r.status_code == 200 and r.headers["x-cache"] == "MISS" and r.json()["model"] == "gpt-4o-mini"
    assert gw.row(rid)["upstream_model"] == "gpt-4o-mini"
    r, rid = gw.post("chat/completions", gw.keys["cheap-only"], {"model": "pool", **body})
    assert r.headers["x-cache"] == "HIT" and r.json()["model"] == "gpt-4o-mini" and gw.row(rid)["cache_hit"]
    # A model the key may not use is refused before the cache is asked.
    r, _ = gw.post("chat/completions", MASTER, {"model": "big", **body})
    r, rid = gw.post("chat/completions", gw.keys["cheap-only"], {"model": "big", **body})
    assert r.status_code == 403 and "x-cache" not in r.headers and not gw.row(rid)["cache_hit"]


def test_a_cached_answer_passes_the_askers_own_guardrails(gw: Gw) -> None:
    """An answer another key put in the (global) cache is checked by the asker's guardrails, as one from the
    upstream would be: its post_call checks on the answer, its during_call checks on the request."""
    for word, guardrail in (("fox", "no-fox"), ("besideword", "beside")):
        body = {"model": "cheap", "messages": [{"role": "user", "content": f"{word} {uuid.uuid4().hex}"}]}
        r, _ = gw.post("chat/completions", gw.keys["cheap-only"], body)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS" and "fox" in r.text
        for stream in (False, True):
            r, rid = gw.post("chat/completions", gw.keys["guarded"], {**body, "stream": stream})
            assert r.status_code == 400, (word, stream, r.text)
            assert r.json()["error"]["code"] == "guardrail_blocked" and guardrail in r.json()["error"]["message"]
            assert "brown" not in r.text and gw.row(rid)["status"] == 400
        r, _ = gw.post("chat/completions", gw.keys["cheap-only"], body)  # the others still get the answer
        assert r.status_code == 200 and r.headers["x-cache"] == "HIT"


def test_a_models_guardrails_run_however_the_request_names_it(gw: Gw) -> None:
    """The guardrails of a model (`guardrail_policy.models`) run on every request that may reach its deployment:
    by its name, as PROVIDER/MODEL, through an alias, a fallback or a pinned provider."""
    for model, headers in (("watched", {}), ("up/gpt-4.1", {}), ("gpt-4.1", {}), ("watched-too", {}),
                           ("cheap", {"x-gateway-fallbacks": "watched-too", "x-gateway-provider": "down"})):
        r, _ = gw.chat(MASTER, model, {"x-gateway-cache": "false", **headers})
        assert r.status_code == 400, (model, headers, r.text)
        assert r.json()["error"]["code"] == "guardrail_blocked" and "no-fox" in r.json()["error"]["message"]
    r, _ = gw.chat(MASTER, "cheap", {"x-gateway-cache": "false"})  # a route that never reaches gpt-4.1: none
    assert r.status_code == 200, r.text


def test_messages_count_tokens_and_embeddings_obey_the_key(gw: Gw) -> None:
    client = anthropic.Anthropic(base_url=gw.proc.url, api_key=gw.keys["cheap-only"], max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="big", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    out = client.messages.create(model="cheap", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert out.content
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model="big", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model="up/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert client.messages.count_tokens(model="cheap", messages=[{"role": "user", "content": "hi"}]).input_tokens
    for model, status in (("big", 403), ("up/gpt-4o", 403), ("cheap", 200)):  # LLMGateway's count, the same way
        r = httpx.post(f"{gw.proc.url}/extras/tokenize/count", json={"model": model, "input": "hi"},
                       headers={"authorization": f"Bearer {gw.keys['cheap-only']}"})
        assert r.status_code == status, (model, r.text)
    r, rid = gw.post("embeddings", gw.keys["cheap-only"], {"model": "text-embedding-3-large", "input": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    r, rid = gw.post("embeddings", gw.keys["cheap-only"], {"model": "cheap", "input": "x"})
    assert r.status_code == 200 and gw.row(rid)["deployment"] == "up/gpt-4o-mini"


def test_pass_through_needs_allow_passthrough_and_checks_its_model(gw: Gw) -> None:
    before = len(gw.upstream.requests)
    r, rid = gw.post("moderations", gw.keys["cheap-only"], {"model": "gpt-4o-mini", "input": "hi"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "passthrough_not_allowed"
    files = httpx.get(f"{gw.proc.v1}/files", headers={"authorization": f"Bearer {gw.keys['cheap-only']}"})
    assert files.status_code == 403
    assert gw.upstream.requests[before:] == []
    assert gw.row(rid)["status"] == 403
    key = gw.keys["cheap-passthrough"]
    r, rid = gw.post("moderations", key, {"model": "gpt-4o", "input": "hi"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    r, rid = gw.post("moderations", key, {"model": "gpt-4o-mini", "input": "hi"})
    assert r.status_code == 200 and r.json()["echo"] == "/v1/moderations"
    row = gw.row(rid)
    assert (row["model"], row["provider"], row["upstream_model"]) == ("gpt-4o-mini", "up", "gpt-4o-mini")
    files = httpx.get(f"{gw.proc.v1}/files", headers={"authorization": f"Bearer {key}"})
    assert files.status_code == 200, files.text
    assert httpx.get(f"{gw.proc.v1}/files", headers={"authorization": f"Bearer {MASTER}"}).status_code == 200
    assert httpx.get(f"{gw.proc.v1}/files").status_code == 401


def test_a_key_cannot_choose_the_providers_organization_or_project(gw: Gw) -> None:
    """`OpenAI-Organization` / `OpenAI-Project` pick what the provider's key acts for (billing, stored data): the
    client's own choice when its own key goes upstream (keyless mode), never a virtual key holder's."""
    chosen = {"openai-organization": "org-someone-else", "openai-project": "proj_someone_else",
              "openai-beta": "assistants=v2", "x-gateway-cache": "false"}
    before = len(gw.upstream.requests)
    for key in (gw.keys["cheap-only"], MASTER):
        r, _ = gw.chat(key, "cheap", chosen)
        assert r.status_code == 200, r.text
    r, _ = gw.post("moderations", gw.keys["cheap-passthrough"], {"model": "gpt-4o-mini", "input": "x"}, chosen)
    assert r.status_code == 200, r.text
    sent = [{k.lower(): v for k, v in req.headers.items()} for req in gw.upstream.requests[before:]]
    assert len(sent) == 3
    for headers in sent:
        assert "openai-organization" not in headers and "openai-project" not in headers, headers
        assert headers["openai-beta"] == "assistants=v2"  # a feature flag, not a choice of account


def test_the_model_list_obeys_the_key(gw: Gw) -> None:
    def names(key: str) -> set[str]:
        r = httpx.get(f"{gw.proc.v1}/models", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200
        return {m["id"] for m in r.json()["data"]}

    assert names(MASTER) >= {"cheap", "big", "pool", "flaky", "hedged"}
    assert names(gw.keys["cheap-only"]) == {"cheap", "pool", "hedged"}  # each reaches gpt-4o-mini
    assert httpx.get(f"{gw.proc.v1}/models").status_code == 401


def test_keys_and_teams_get_the_permissions_through_the_admin_api(gw: Gw) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}
    team = httpx.post(f"{gw.proc.url}/api/v1/teams", headers=admin, json={"name": "platform"}).json()
    assert team["allow_overrides"] is False and team["allow_passthrough"] is False
    secret = gw.key("team-member", models=["cheap"], team_id=team["id"])
    r, _ = gw.chat(secret, "cheap", {"x-gateway-retries": "0"})
    assert r.status_code == 400
    changed = httpx.patch(f"{gw.proc.url}/api/v1/teams/{team['id']}", headers=admin,
                          json={"allow_overrides": True})
    assert changed.status_code == 200 and changed.json()["allow_overrides"] is True
    r, _ = gw.chat(secret, "cheap", {"x-gateway-retries": "0"})
    assert r.status_code == 200, r.text
    # the key's own setting wins over its team's
    key_id = httpx.get(f"{gw.proc.url}/api/v1/keys?team_id={team['id']}", headers=admin).json()["data"][0]["id"]
    patched = httpx.patch(f"{gw.proc.url}/api/v1/keys/{key_id}", headers=admin, json={"allow_overrides": False})
    assert patched.status_code == 200 and patched.json()["allow_overrides"] is False
    r, _ = gw.chat(secret, "cheap", {"x-gateway-retries": "0"})
    assert r.status_code == 400
    bad = httpx.patch(f"{gw.proc.url}/api/v1/keys/{key_id}", headers=admin, json={"allow_overrides": "yes"})
    assert bad.status_code == 422 and "allow_overrides" in bad.text


def test_the_cli_creates_keys_with_the_permissions(gw: Gw) -> None:
    def create(*flags: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "llm_gateway", "keys", "create", "--models", "cheap", *flags,
                              "--database-url", f"sqlite:///{gw.db}", "--json"],
                             capture_output=True, text=True, check=True, timeout=60)
        return dict(json.loads(out.stdout))

    steering = create("--allow-overrides", "--no-allow-passthrough")
    assert steering["allow_overrides"] is True and steering["allow_passthrough"] is False
    plain = create()
    assert plain["allow_overrides"] is None and plain["allow_passthrough"] is None
    assert gw.chat(steering["key"], "cheap", {"x-gateway-retries": "0"})[0].status_code == 200
    assert gw.chat(plain["key"], "cheap", {"x-gateway-retries": "0"})[0].status_code == 400
    assert gw.post("moderations", steering["key"], {"model": "cheap", "input": "x"})[0].status_code == 403


def test_pass_through_reads_the_model_of_any_body(gw: Gw) -> None:
    """The upstream reads a model from a body without a JSON content type (none at all, another case, text, a
    form, multipart): the key's `models` decide on it just the same."""
    key = gw.keys["cheap-passthrough"]
    auth = {"authorization": f"Bearer {key}"}
    url = f"{gw.proc.v1}/audio/transcriptions"
    forbidden_json = json.dumps({"model": "gpt-4o", "input": "hi"}).encode()
    before = len(gw.upstream.requests)
    sends: list[dict[str, Any]] = [
        {"content": forbidden_json},
        {"content": forbidden_json, "headers": {"content-type": "Application/JSON"}},
        {"content": forbidden_json, "headers": {"content-type": "text/plain"}},
        {"data": {"model": "gpt-4o"}},
        {"data": {"model": "gpt-4o"}, "files": {"file": ("a.wav", b"RIFF....", "audio/wav")}},
        {"content": b"input=hi;model=gpt-4o", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    ]
    answers = [httpx.post(url, **{**send, "headers": {**auth, **send.get("headers", {})}}) for send in sends]
    assert [(r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else "") for r in answers] == [
        (403, "model_not_allowed")] * len(sends)
    # two models in one body: which one the upstream takes is its parser's choice, so neither is
    r = httpx.post(url, headers=auth, data={"model": ["gpt-4o-mini", "gpt-4o"]},
                   files={"file": ("a.wav", b"RIFF", "audio/wav")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ambiguous_model"
    # a boundary longer than the parser takes (RFC 2046: 70 at most) is a body that cannot be read, not a 500
    r = httpx.post(url, headers={**auth, "content-type": f"multipart/form-data; boundary={'b' * 300}"},
                   content=b"--x--")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_body", r.text
    assert gw.upstream.requests[before:] == []
    # the model the key may use, and a multipart body that names none (a file upload), go through
    r = httpx.post(url, headers=auth, data={"model": "gpt-4o-mini"},
                   files={"file": ("a.wav", b"RIFF....", "audio/wav")})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{gw.proc.v1}/files", headers=auth, data={"purpose": "batch"},
                   files={"file": ("b.jsonl", b'{"model": "gpt-4o"}\n', "application/jsonl")})
    assert r.status_code == 200, r.text
    assert [req.path for req in gw.upstream.requests[before:]] == ["/v1/audio/transcriptions", "/v1/files"]
