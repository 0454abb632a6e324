"""The provider conformance suite: every provider's declared cases, through a real gateway, against replays.

Each case asserts the exact upstream request the adapter sent and the exact response (or SSE stream) the
client got. `UPDATE_PROVIDER_FIXTURES=1` rewrites the `.expect.json` files (review the diff before keeping it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from tests.conftest import GatewayProcess, launch
from tests.providers import anthropic_cases, azure_cases, bedrock_cases, gemini_cases, openai_compat_cases
from tests.providers.case import FIXTURES, Case
from tests.providers.replay import ReplayServer, Reply
from tests.providers.sdk_types import check_anthropic, check_bedrock, check_gemini
from tests.providers.sigv4_reference import expected_authorization

MODULES = (anthropic_cases, gemini_cases, bedrock_cases, azure_cases, openai_compat_cases)
CASES: list[Case] = [case for module in MODULES for case in module.CASES]
UPDATE = os.environ.get("UPDATE_PROVIDER_FIXTURES") == "1"
IGNORED_HEADERS = {"host", "content-length", "user-agent", "x-amz-date", "authorization", "accept-encoding",
                   "connection"}
GENERATED_ID = re.compile(r"^chatcmpl-[0-9a-f]{8,}$")


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(replay: ReplayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    providers = []
    for module in MODULES:
        for config in module.PROVIDERS:
            providers.append({**config, "base_url": config["base_url"].format(replay=replay.url)})
    gw = launch([], tmp_path_factory.mktemp("conformance"), config={"providers": providers})
    yield gw
    gw.stop()


def _normalise(obj: Any) -> Any:
    """Values that differ per run: `created`, and ids the gateway makes up when the provider gives none."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key == "created" and isinstance(value, int):
                value = 0
            elif key == "id" and isinstance(value, str) and GENERATED_ID.match(value):
                value = "chatcmpl-<generated>"
            else:
                value = _normalise(value)
            out[key] = value
        return out
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    return obj


def _events(raw: bytes) -> list[Any]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), f"not an SSE data event: {block!r}"
        data = block[6:]
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def _upstream_body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode("latin-1")


def _check_signature(case: Case, sent: Any, config: dict[str, Any]) -> None:
    options = config.get("options") or {}
    auth = sent.headers.get("authorization", "")
    if "access_key_id" not in options:
        return
    signed = re.search(r"SignedHeaders=([^,]+)", auth)
    assert signed, auth
    path = sent.path
    headers = {**sent.headers, "host": sent.headers["host"]}
    want = expected_authorization("POST", path, headers, signed.group(1).split(";"), sent.body,
                                  options["access_key_id"], options["secret_access_key"], options["region"],
                                  "bedrock")
    assert auth == want, f"{case.id}: SigV4 signature mismatch"


def _check_sdk_types(case: Case, sent: Any) -> None:
    """Every chat request built for a translating provider is one its SDK's request types accept."""
    body = _upstream_body(sent.body)
    if case.folder == "anthropic":
        check_anthropic(body)
    elif case.folder == "gemini":
        check_gemini(body)
    elif case.folder == "bedrock":
        check_bedrock(body, unquote(sent.path.split("/model/", 1)[1].rsplit("/", 1)[0]))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_provider_case(case: Case, gateway: GatewayProcess, replay: ReplayServer) -> None:
    replay.reply = Reply(case.status, case.upstream_path.read_bytes(), case.content_type, case.upstream_headers,
                         case.chunk_size)
    before = len(replay.received)
    response = httpx.post(f"{gateway.v1}/{case.endpoint}", json=case.request, timeout=10)
    assert len(replay.received) == before + 1, f"{case.id}: the gateway did not call the upstream once"
    sent = replay.received[-1]
    config = next(p for m in MODULES for p in m.PROVIDERS if p["name"] == case.provider)
    _check_signature(case, sent, config)
    got = {
        "upstream_request": {
            "method": sent.method, "path": sent.path,
            "headers": {k: v for k, v in sorted(sent.headers.items()) if k not in IGNORED_HEADERS},
            "authorization": ("<sigv4>" if sent.headers.get("authorization", "").startswith("AWS4-")
                              else sent.headers.get("authorization")),
            "body": _upstream_body(sent.body),
        },
        "response": {
            "status": response.status_code,
            "dropped_params": response.headers.get("x-llm-gateway-dropped-params"),
            "body": _normalise(_events(response.content) if case.request.get("stream") and
                               response.status_code == 200 else response.json()),
        },
    }
    if case.endpoint == "chat/completions" and response.status_code < 500:
        _check_sdk_types(case, sent)
    path: Path = case.expect_path
    if UPDATE or not path.exists():
        path.write_bytes(orjson.dumps(got, option=orjson.OPT_INDENT_2) + b"\n")
        if not UPDATE:
            pytest.fail(f"{case.id}: wrote the missing {path.name}; review it and run again")
    assert got == orjson.loads(path.read_bytes())


def test_unsupported_params_rejected_when_configured(gateway: GatewayProcess, replay: ReplayServer) -> None:
    before = len(replay.received)
    response = httpx.post(f"{gateway.v1}/chat/completions", json=anthropic_cases.STRICT_REJECTED, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "provider 'anthropic-strict' does not support the parameter(s) logit_bias, seed",
        "type": "invalid_request_error", "code": "unsupported_parameter", "param": "logit_bias"}
    assert len(replay.received) == before, "a rejected request must not reach the upstream"


def test_openai_sdk_assembles_streamed_tool_calls(gateway: GatewayProcess, replay: ReplayServer) -> None:
    import openai

    for module, model, fixture, args in (
            (anthropic_cases, "claude", "anthropic/stream_tool_use.sse",
             {"location": "San Francisco, CA", "unit": "fahrenheit"}),
            (bedrock_cases, "sonnet", "bedrock/stream_tool_use.bin", {"location": "Seattle"})):
        content_type = "application/vnd.amazon.eventstream" if fixture.endswith(".bin") else "text/event-stream"
        replay.reply = Reply(200, (Path(__file__).parent / "fixtures" / fixture).read_bytes(), content_type,
                             chunk_size=17)
        client = openai.OpenAI(base_url=gateway.v1, api_key="k", max_retries=0)
        calls: dict[int, dict[str, str]] = {}
        finish = None
        with client.chat.completions.create(model=model, stream=True, tools=[module.WEATHER],
                                            messages=[{"role": "user", "content": "Weather?"}]) as stream:
            for chunk in stream:
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    for tc in choice.delta.tool_calls or ():
                        call = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                        if tc.function and tc.function.name:
                            call["name"] = tc.function.name
                        if tc.function and tc.function.arguments:
                            call["arguments"] += tc.function.arguments
        assert finish == "tool_calls"
        assert [(c["name"], orjson.loads(c["arguments"])) for c in calls.values()] == [("get_weather", args)]


# An OpenAI request as a client may write it: its own spacing and number formats, a nested "model" key.
OPENAI_REQUEST = (b'{ "model" : "fast", "messages": [{"role": "user", "content": "Hi\\u00e9"}],\n'
                  b'  "temperature": 0.70, "max_tokens": 1e2, "metadata": {"model": "fast"}, "vendor_knob": [1, 2] }')


def test_openai_clients_to_openai_providers_keep_their_bytes(gateway: GatewayProcess, replay: ReplayServer) -> None:
    """Same wire format on both sides: the upstream gets the client's bytes but for the model name."""
    replay.reply = Reply(200, (FIXTURES / "openai_compat" / "chat_completion.json").read_bytes())
    response = httpx.post(f"{gateway.v1}/chat/completions", content=OPENAI_REQUEST, timeout=10,
                          headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.content == (FIXTURES / "openai_compat" / "chat_completion.json").read_bytes()
    assert replay.received[-1].body == OPENAI_REQUEST.replace(b'"model" : "fast"',
                                                              b'"model" : "llama-3.1-8b-instant"')
