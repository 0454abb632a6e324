"""Bad input gets a clear OpenAI-shaped 4xx; upstream faults a clear 502/504; never a stack trace or a hang."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.conftest import GatewayProcess, launch, metric_value, upstream_args
from tests.upstream import Upstream, free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def error_of(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code", "param"} <= set(body["error"]), body
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("data", "headers", "status", "needle"), [
    (b"{not json", {"content-type": "application/json"}, 400, "not valid JSON"),
    (b"[1, 2]", {"content-type": "application/json"}, 400, "must be a JSON object"),
    (b"", {"content-type": "application/json"}, 400, "empty"),
    (b'{"messages": []}', {"content-type": "application/json"}, 400, "model"),
    (b'{"model": 5, "messages": []}', {"content-type": "application/json"}, 400, "model must be a string"),
    (b'{"model": "m", "stream": "yes"}', {"content-type": "application/json"}, 400, "stream must be a boolean"),
    (b"model=m", {"content-type": "text/plain"}, 400, "not valid JSON"),  # keyless: any type, read as JSON
    (gzip.compress(b'{"model": "m"}', mtime=0), {"content-type": "application/json", "content-encoding": "gzip"}, 415,
     "compressed"),
])
def test_malformed_requests(gateway: GatewayProcess, data: bytes, headers: dict[str, str], status: int,
                            needle: str) -> None:
    r = httpx.post(f"{gateway.v1}/chat/completions", content=data, headers=headers)
    assert r.status_code == status
    assert needle in str(error_of(r)["message"])


@pytest.fixture(scope="module")
def translating(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway whose models go to providers that translate the OpenAI request (never reached here), with a
    guardrail and a token limit."""
    providers = [{"name": "ant", "type": "anthropic", "base_url": f"{upstream.url}/anthropic", "api_key": "sk-ant-up",
                  "models": [{"name": "claude", "model": "claude-sonnet-4-5"}]},
                 {"name": "gem", "type": "gemini", "base_url": f"{upstream.url}/gemini", "api_key": "AIza-test",
                  "models": [{"name": "gemini", "model": "gemini-2.0-flash"}]},
                 {"name": "bed", "type": "bedrock", "base_url": f"{upstream.url}/bedrock",
                  "options": {"region": "us-east-1"}, "models": [{"name": "bedrock", "model": "anthropic.claude-3"}]},
                 {"name": "az", "type": "azure", "base_url": f"{upstream.url}/azure", "api_key": "az-key",
                  "models": ["azure-*"]},
                 {"name": "bedwild", "type": "bedrock", "base_url": f"{upstream.url}/bedrock", "models": ["bedrock-*"],
                  "options": {"region": "us-east-1", "access_key_id": "AKIDTEST", "secret_access_key": "secret"}},
                 {"name": "openai", "type": "openai-compatible", "base_url": f"{upstream.url}/v1", "models": ["*"]}]
    config = {"providers": providers,  # and parts that read the request before any provider does
              "guardrails": [{"name": "words", "type": "keywords", "keywords": ["forbidden-topic"]}],
              "guardrail_policy": {"default": ["words"]},
              "limits": {"rules": [{"scope": "key", "tokens": 10_000_000}]}}
    gw = launch([], tmp_path_factory.mktemp("translating"), config=config,
                env={"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_PROFILE": ""})
    yield gw
    gw.stop()


TOOL_CALLS_5 = [{"role": "assistant", "tool_calls": 5}]
TEXT_5 = [{"role": "user", "content": [{"type": "text", "text": 5}]}]
BASE = {"/v1/chat/completions": CHAT, "/v1/messages": {**CHAT, "max_tokens": 10}, "/v1/responses": {"input": "hi"}}


@pytest.mark.parametrize(("path", "model", "fields"), [
    ("/v1/chat/completions", "gemini", {"stop": 5}),
    ("/v1/chat/completions", "gemini", {"tools": 5}),
    ("/v1/chat/completions", "gemini", {"reasoning_effort": [1]}),
    ("/v1/chat/completions", "gemini", {"messages": TOOL_CALLS_5}),
    ("/v1/chat/completions", "bedrock", {"stop": True}),
    ("/v1/chat/completions", "bedrock", {"tools": 1.5}),
    ("/v1/chat/completions", "bedrock", {"messages": [{"role": "assistant", "tool_calls": [{"function": 5}]}]}),
    ("/v1/chat/completions", "claude", {"stop": 1e308}),
    ("/v1/chat/completions", "claude", {"reasoning_effort": {"a": 1}}),
    ("/v1/chat/completions", "claude", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": 5}}]}]}),
    ("/v1/chat/completions", "claude", {"messages": [{"role": "assistant", "tool_calls": [5]}], "stream": True}),
    ("/v1/messages", "gemini", {"stop_sequences": 5}),
    ("/v1/messages", "claude", {"metadata": "str"}),
    ("/v1/messages", "claude", {"messages": TEXT_5}),
    ("/v1/responses", "bedrock", {"input": TEXT_5}),
])
def test_a_request_that_cannot_be_translated_is_400(translating: GatewayProcess, path: str, model: str,
                                                    fields: dict[str, object]) -> None:
    r = httpx.post(f"{translating.url}{path}", json={**BASE[path], "model": model, **fields})
    assert r.status_code == 400, r.text
    if path == "/v1/messages":
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        message = body["error"]["message"]
    else:
        message = error_of(r)["message"]
    assert "could not be translated" in str(message)
    assert "Traceback" not in translating.log()


@pytest.mark.parametrize("model", ["az/..", "az/.", "bedwild/..", "bedwild/."])
def test_a_model_name_is_never_a_dot_segment_of_the_providers_url(translating: GatewayProcess, upstream: Upstream,
                                                                   model: str) -> None:
    """A deployment name the client chooses goes into the provider's URL path: `..` there would send the request,
    with the provider's key, to another path of the provider's API (`/openai/deployments/../chat/completions`)."""
    before = len(upstream.requests)
    r = httpx.post(f"{translating.v1}/chat/completions", json={**CHAT, "model": model})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_model", r.text
    assert len(upstream.requests) == before  # nothing went out


@pytest.mark.parametrize("fields", [
    {"messages": 5},
    {"messages": [{"role": "assistant", "tool_calls": [{"function": 5}]}, {"role": "user", "content": "hi"}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"function": None}]}, {"role": "user", "content": "hi"}]},
])
def test_guardrails_and_token_limits_read_any_request_shape(translating: GatewayProcess,
                                                            fields: dict[str, object]) -> None:
    """The guardrail and the token estimate read a request the upstream judges; what it makes of it is its own."""
    r = httpx.post(f"{translating.v1}/chat/completions", json={**CHAT, **fields}, headers={"user": "u"})
    assert r.status_code < 500, r.text
    assert "Traceback" not in translating.log()


DEEP = "[" * 300 + "]" * 300  # deeper than orjson writes (254 levels), which it reads (1,024)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"])
def test_a_body_nested_deeper_than_the_gateway_writes_is_400(translating: GatewayProcess, path: str) -> None:
    """The gateway writes the bodies it reads (an ingress's translation, a guardrail's rewrite, a stored echo):
    what it could read but not write was a 500, or a 502 after the upstream had answered."""
    body = json.dumps({**BASE.get(path, {"input": "hi"}), "model": "m", "metadata": {"a": "DEEP"}})
    r = httpx.post(f"{translating.url}{path}", content=body.replace('"DEEP"', DEEP),
                   headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (r.json().get("type") == "error") == (path == "/v1/messages"), r.text  # the client's format
    assert "nested too deeply" in error["message"]
    assert "Traceback" not in translating.log()


@pytest.mark.parametrize("header", ["x-gateway-metadata", "x-gateway"])
def test_gateway_metadata_nested_deeper_than_the_gateway_writes_is_400(translating: GatewayProcess,
                                                                        header: str) -> None:
    """The metadata goes into the ledger row as JSON: one it cannot write lost the row of a request it served."""
    value = '{"a": DEEP}' if header == "x-gateway-metadata" else '{"metadata": {"a": DEEP}}'
    r = httpx.post(f"{translating.v1}/chat/completions", json={**CHAT, "model": "m"},
                   headers={header: value.replace("DEEP", DEEP)})
    assert r.status_code == 400, r.text
    assert "nested too deeply" in str(error_of(r)["message"])


def test_curl_default_form_content_type_with_json_body_is_accepted(gateway: GatewayProcess) -> None:
    r = httpx.post(f"{gateway.v1}/chat/completions", content=httpx.Request("POST", "/", json=CHAT).content,
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200


def test_body_over_limit_is_413(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    config = {"server": {"max_body_mb": 0.01}}
    gw = gateway_factory(upstream_args(upstream), config=config)
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 20_000}]}
    r = httpx.post(f"{gw.v1}/chat/completions", json=big)
    assert r.status_code == 413
    assert "larger than the limit" in str(error_of(r)["message"])
    assert httpx.post(f"{gw.v1}/chat/completions", json=CHAT).status_code == 200  # the gateway lives on


def test_unknown_model_and_path_with_config(gateway_factory: Callable[..., GatewayProcess],
                                            upstream: Upstream) -> None:
    config = {"providers": [{"name": "local", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "api_key": "sk-provider-secret", "models": ["small", {"name": "big", "model": "m-2"}]}]}
    gw = gateway_factory(config=config)
    r = httpx.post(f"{gw.v1}/chat/completions", json={**CHAT, "model": "nope"})
    assert r.status_code == 404
    err = error_of(r)
    assert err["code"] == "model_not_found" and "nope" in str(err["message"])
    r = httpx.post(f"{gw.v1}/chat/completions", json={**CHAT, "model": "big"}, headers={"authorization": "Bearer c"})
    assert r.status_code == 200
    sent = upstream.requests[-1]
    assert sent.body["model"] == "m-2"  # the provider's own name for it
    assert sent.headers["Authorization"] == "Bearer sk-provider-secret"  # config key replaces the client's
    r = httpx.get(f"{gw.v1}/models")
    assert sorted(m["id"] for m in r.json()["data"]) == ["big", "small"]
    assert httpx.get(f"{gw.v1}/files").status_code == 404  # no single pass-through upstream here
    r = httpx.get(f"{gw.v1}/chat/completions")
    assert r.status_code == 405
    assert "sk-provider-secret" not in gw.log()


def test_upstream_down_is_502(gateway_factory: Callable[..., GatewayProcess]) -> None:
    gw = gateway_factory(["--openai-domain", "127.0.0.1", "--openai-port", str(free_port())])
    r = httpx.post(f"{gw.v1}/chat/completions", json=CHAT)
    assert r.status_code == 502
    assert error_of(r)["message"] == "upstream openai unreachable"
    assert httpx.get(f"{gw.url}/ready").status_code == 503


def test_upstream_timeout_is_504(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    config = {"providers": [{"name": "slow", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                             "models": ["*"], "timeouts": {"first_token": 0.5}}]}
    gw = gateway_factory(config=config)
    started = time.monotonic()
    r = httpx.post(f"{gw.v1}/chat/completions", json={**CHAT, "model": "hang"}, timeout=10)
    assert r.status_code == 504
    assert time.monotonic() - started < 3
    assert "no response within 0.5s" in str(error_of(r)["message"])


def test_stream_cut_by_upstream_ends_with_error_event(gateway: GatewayProcess) -> None:
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json={**CHAT, "model": "cut-stream",
                                                                      "stream": True}) as r:
        assert r.status_code == 200
        body = b"".join(r.iter_bytes())
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1].startswith(b'data: {"error"'), events[-1]
    assert b"[DONE]" not in body


def test_client_disconnect_mid_stream_cancels_upstream_and_still_counts(gateway: GatewayProcess) -> None:
    port = gateway.port
    payload = httpx.Request("POST", "/", json={**CHAT, "model": "slow-300", "stream": True}).content
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"user: leaver\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload))
        got = b""
        while b'"content":"The"' not in got:
            got += s.recv(65536)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{gateway.url}/metrics").text
        if metric_value(metrics, "llm_gateway_requests_total",
                        {"model": "slow-300", "provider": "openai", "status": "499"}) == 1:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the disconnected request was not recorded")
    # What streamed ("The") was counted locally; the prompt too: 1 message "hi" -> 1 + 1 role + 3 + 3 = 8.
    assert metric_value(metrics, "completion_tokens_by_user_by_model_total",
                        {"user": "leaver", "model": "slow-300"}) >= 1
    assert metric_value(metrics, "prompt_tokens_by_user_by_model_total",
                        {"user": "leaver", "model": "slow-300"}) == 8


def test_health_ready_and_metrics_port(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 200 and ready.json()["providers"] == {"openai": "reachable"}
    r = httpx.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics")
    assert r.status_code == 200 and "# TYPE tokens_total counter" in r.text
