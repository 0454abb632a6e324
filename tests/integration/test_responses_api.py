"""/v1/responses through the official `openai` SDK, over a chat upstream, an Anthropic one and a native one.

One gateway process for the module (keys on, so that stored responses have owners); the test upstream answers
chat completions, `responses_upstreams` answers the Anthropic Messages API and OpenAI's Responses API.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter
from tests.conftest import GatewayProcess, launch, metric_value
from tests.integration.responses_upstreams import ProviderMocks
from tests.providers.replay import ReplayServer, Reply
from tests.upstream import Upstream

FIXTURES = Path(__file__).parents[1] / "providers" / "fixtures"
MASTER = "sk-master-responses"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ITEMS: TypeAdapter[Any] = TypeAdapter(ResponseItem)


@pytest.fixture(scope="module")
def mocks() -> Iterator[ProviderMocks]:
    server = ProviderMocks().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, mocks: ProviderMocks, replay: ReplayServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("responses")
    gw = launch([], tmp, config={
        "auth": {"master_key": MASTER},
        "database": {"url": f"sqlite:///{tmp / 'gateway.db'}"},
        "providers": [
            {"name": "claude", "type": "anthropic", "base_url": f"{mocks.url}/anthropic", "api_key": "sk-ant-up",
             "models": [{"name": "sonnet", "model": "claude-sonnet-4-5"},
                        {"name": "lingering", "model": "claude-linger"}]},
            {"name": "oai", "type": "openai", "base_url": f"{mocks.url}/openai/v1", "api_key": "sk-oai-up",
             "models": [{"name": "gpt-native", "model": "gpt-4.1"}]},
            {"name": "gem", "type": "gemini", "base_url": f"{replay.url}/gemini", "api_key": "AIza-test",
             "models": [{"name": "gemini-flash", "model": "gemini-2.5-flash"}]},
            {"name": "aws", "type": "bedrock", "base_url": f"{replay.url}/bedrock", "models": [
                {"name": "nova", "model": "amazon.nova-lite-v1:0"}], "options": {
                "region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret"}},
            {"name": "chat", "type": "openai-compatible", "base_url": f"{upstream.url}/v1", "models": ["*"]}],
        "models": {"claude-alias": {"deployments": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
                   "moves-to-claude": {"retries": 0, "fallbacks": ["claude-alias"],
                                       "deployments": [{"provider": "chat", "model": "error-503"}]}}})
    gw.db = tmp / "gateway.db"  # type: ignore[attr-defined]
    yield gw
    gw.stop()


def _admin(gw: GatewayProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{gw.url}/api/v1/{path}", json=body, headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def keys(gateway: GatewayProcess) -> dict[str, str]:
    """Two keys of team A, one of team B, one without a team."""
    team_a, team_b = _admin(gateway, "teams", {"name": "a"})["id"], _admin(gateway, "teams", {"name": "b"})["id"]
    return {"a1": _admin(gateway, "keys", {"team_id": team_a})["key"],
            "a2": _admin(gateway, "keys", {"team_id": team_a})["key"],
            "b": _admin(gateway, "keys", {"team_id": team_b})["key"], "solo": _admin(gateway, "keys", {})["key"]}


def sdk(gw: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0)


def raw_json(gw: GatewayProcess, key: str, rid: str, tail: str = "") -> httpx.Response:
    return httpx.get(f"{gw.v1}/responses/{rid}{tail}", headers={"authorization": f"Bearer {key}"})


def test_text_json_is_a_valid_response_and_runs_the_pipeline(gateway: GatewayProcess, keys: dict[str, str],
                                                             upstream: Upstream) -> None:
    client = sdk(gateway, keys["a1"])
    out = client.responses.create(model="gpt-4o-mini", input="Say hello", instructions="Be terse.",
                                  max_output_tokens=50, temperature=0.3, metadata={"ticket": "t-1"})
    assert out.id.startswith("resp_") and out.status == "completed" and out.object == "response"
    assert out.output_text == "The quick brown fox jumps"
    assert out.usage is not None and (out.usage.input_tokens, out.usage.output_tokens) == (11, 5)
    assert out.metadata == {"ticket": "t-1"} and out.instructions == "Be terse." and out.max_output_tokens == 50
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {"model": "gpt-4o-mini", "max_tokens": 50, "temperature": 0.3,
                         "messages": [{"role": "system", "content": "Be terse."},
                                      {"role": "user", "content": "Say hello"}]}
    stored = raw_json(gateway, keys["a1"], out.id)
    assert stored.status_code == 200
    Response.model_validate(stored.json(), strict=False)  # the SDK's own type, validated (not just built)
    assert stored.json() == out.model_dump(mode="json", exclude_unset=True)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_requests_total",
                        {"model": "gpt-4o-mini", "provider": "chat", "status": "200"}) >= 1


def _ledger_rows(gw: GatewayProcess, model: str, wait_for: float = 0.0) -> list[tuple[Any, ...]]:
    time.sleep(wait_for)
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(gw.db) as db:  # type: ignore[attr-defined]
            rows = db.execute("SELECT endpoint, prompt_tokens, completion_tokens, status FROM gw_usage "
                              "WHERE model = ?", (model,)).fetchall()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_stream_events_validate_and_carry_one_id(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    client = sdk(gateway, keys["a1"])
    events = list(client.responses.create(model="stream-model", input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert kinds.count("response.output_text.delta") == 5
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        EVENTS.validate_python(event.model_dump(mode="json", exclude_unset=True))
    ids = {e.response.id for e in events if e.type.startswith("response.") and hasattr(e, "response")}
    assert len(ids) == 1
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "The quick brown fox jumps" and final.usage.output_tokens == 5
    # written before response.completed went out: readable at once
    assert raw_json(gateway, keys["a1"], final.id).json()["output"][0]["content"][0]["text"] == final.output_text
    assert ("chat/completions", 11, 5, 200) in _ledger_rows(gateway, "stream-model")


def test_a_client_that_hangs_up_after_the_last_event_had_an_answered_turn(gateway: GatewayProcess,
                                                                         keys: dict[str, str]) -> None:
    """Agents (Codex CLI) close the connection on response.completed; the upstream may not have ended yet."""
    started = time.monotonic()
    with httpx.stream("POST", f"{gateway.v1}/responses", headers={"authorization": f"Bearer {keys['a1']}"},
                      json={"model": "lingering", "input": "hi", "stream": True}, timeout=10) as r:
        for line in r.iter_lines():
            if line == "event: response.completed":
                break
    assert time.monotonic() - started < 0.9  # the response ended with its last event, not with the upstream
    assert _ledger_rows(gateway, "lingering", wait_for=1.5) == [("chat/completions", 10, 5, 200)]


def test_async_client_and_the_stream_helper(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    async def run() -> tuple[Any, Any]:
        client = openai.AsyncOpenAI(base_url=gateway.v1, api_key=keys["a1"], max_retries=0)
        plain = await client.responses.create(model="gpt-4o-mini", input="Hi")
        async with client.responses.stream(model="sonnet", input="Hello Claude") as stream:
            texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        await client.close()
        return plain, (texts, final)

    plain, (texts, final) = asyncio.run(run())
    assert plain.output_text == "The quick brown fox jumps"
    assert "".join(texts) == final.output_text == "turn 1: Hello Claude"
    assert final.usage.input_tokens == 10 and final.usage.output_tokens == 5


def test_function_call_round_trip_and_dropped_builtin_tools(gateway: GatewayProcess, keys: dict[str, str],
                                                            upstream: Upstream, mocks: ProviderMocks) -> None:
    client = sdk(gateway, keys["a1"])
    for model in ("gpt-4o-mini", "sonnet"):
        raw = client.responses.with_raw_response.create(
            model=model, input="Weather in Paris?", tools=[WEATHER, {"type": "web_search"}],  # type: ignore[list-item]
            tool_choice="required")
        assert raw.headers["x-gateway-dropped-tools"] == "web_search"
        first = raw.parse()
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather"
        assert orjson.loads(calls[0].arguments) == {"city": "Paris"}
        assert [t.type for t in first.tools] == ["function"]
        second = client.responses.create(model=model, previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
                                          input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                                  "output": "sunny, 21 C"}])
        assert second.status == "completed" and second.previous_response_id == first.id
        listed = raw_json(gateway, keys["a1"], second.id, "/input_items?order=asc").json()["data"]
        assert [i["type"] for i in listed] == ["message", "function_call", "function_call_output"]
        for item in listed:
            ITEMS.validate_python(item)
    chat = [r.body for r in upstream.requests if r.path == "/v1/chat/completions"][-2:]
    assert chat[0]["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city", "parameters": WEATHER["parameters"]}}]
    assert chat[0]["tool_choice"] == "required"
    assert chat[1]["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    claude = mocks.bodies("/anthropic/v1/messages")[-1]
    assert claude["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]}
    assert claude["messages"][2]["content"][0]["type"] == "tool_result"
    with client.responses.stream(model="sonnet", input="Weather?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output[0].arguments == '{"city":"Paris"}'  # type: ignore[union-attr]


class City(BaseModel):
    city: str
    turns: int


def test_json_schema_output_over_the_anthropic_format(gateway: GatewayProcess, keys: dict[str, str],
                                                      mocks: ProviderMocks) -> None:
    parsed = sdk(gateway, keys["a1"]).responses.parse(model="sonnet", input="Where?", text_format=City)
    assert parsed.output_parsed == City(city="Paris", turns=1)
    sent = mocks.bodies("/anthropic/v1/messages")[-1]
    assert sent["output_config"]["format"]["type"] == "json_schema"
    assert sent["output_config"]["format"]["schema"]["properties"]["city"] == {"title": "City", "type": "string"}


@pytest.mark.parametrize("model", ["gpt-4o-mini", "sonnet"])
def test_three_turns_chained_at_once(gateway: GatewayProcess, keys: dict[str, str], upstream: Upstream,
                                     mocks: ProviderMocks, model: str) -> None:
    client = sdk(gateway, keys["a1"])
    previous = None
    for turn, question in enumerate(("one?", "two?", "three?"), 1):
        if turn == 2:  # streamed in the middle: stored before response.completed left
            with client.responses.stream(model=model, input=question, previous_response_id=previous) as stream:
                out = stream.get_final_response()
        else:
            out = client.responses.create(model=model, input=question, previous_response_id=previous)
        previous = out.id
    if model == "sonnet":
        assert out.output_text == "turn 3: three?"
        assert [m["role"] for m in mocks.bodies("/anthropic/v1/messages")[-1]["messages"]] == [
            "user", "assistant", "user", "assistant", "user"]
    else:
        assert upstream.requests[-1].body["messages"] == [
            {"role": "user", "content": "one?"}, {"role": "assistant", "content": "The quick brown fox jumps"},
            {"role": "user", "content": "two?"}, {"role": "assistant", "content": "The quick brown fox jumps"},
            {"role": "user", "content": "three?"}]
    items = raw_json(gateway, keys["a1"], previous, "/input_items?order=asc").json()
    for item in items["data"]:
        ITEMS.validate_python(item)
    assert [(i["type"], i["role"]) for i in items["data"]] == [("message", "user"), ("message", "assistant")] * 2 + [
        ("message", "user")]
    assert items["data"][0]["content"][0] == {"type": "input_text", "text": "one?"}
    newest = sdk(gateway, keys["a1"]).responses.input_items.list(previous, limit=2)
    assert [i.type for i in newest.data] == ["message", "message"] and newest.has_more
    assert newest.data[0].content[0].text == "three?"  # type: ignore[union-attr]


def test_a_fallback_moves_the_chain_to_another_provider(gateway: GatewayProcess, keys: dict[str, str],
                                                        mocks: ProviderMocks) -> None:
    client = sdk(gateway, keys["a1"])
    first = client.responses.create(model="gpt-4o-mini", input="first question")
    moved = client.responses.create(model="moves-to-claude", input="second question", previous_response_id=first.id)
    assert moved.output_text == "turn 2: second question"
    assert mocks.bodies("/anthropic/v1/messages")[-1]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first question"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The quick brown fox jumps"}]},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]}]
    third = client.responses.create(model="gpt-4o-mini", input="third", previous_response_id=moved.id)
    assert third.status == "completed"


def test_visibility_store_false_and_delete(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    out = sdk(gateway, keys["a1"]).responses.create(model="gpt-4o-mini", input="secret plans")
    assert sdk(gateway, keys["a2"]).responses.retrieve(out.id).id == out.id  # same team
    for other in (keys["b"], keys["solo"], MASTER):
        with pytest.raises(openai.NotFoundError):
            sdk(gateway, other).responses.retrieve(out.id)
        with pytest.raises(openai.NotFoundError):
            sdk(gateway, other).responses.create(model="gpt-4o-mini", input="x", previous_response_id=out.id)
        assert raw_json(gateway, other, out.id, "/input_items").status_code == 404
    assert raw_json(gateway, "sk-not-a-key", out.id).status_code == 401
    unstored = sdk(gateway, keys["a1"]).responses.create(model="gpt-4o-mini", input="forget me", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        sdk(gateway, keys["a1"]).responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError) as chained:
        sdk(gateway, keys["a1"]).responses.create(model="gpt-4o-mini", input="x", previous_response_id=unstored.id)
    assert chained.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk(gateway, keys["b"]).responses.delete(out.id)
    sdk(gateway, keys["a2"]).responses.delete(out.id)
    with pytest.raises(openai.NotFoundError):
        sdk(gateway, keys["a1"]).responses.retrieve(out.id)


NATIVE = (b'{"model": "gpt-native",  "input": [{"role": "user", "content": "hi there"}],\n "store": true, '
          b'"reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"], "metadata": {"model": "x"}}')


def test_an_openai_deployment_gets_the_request_as_it_came(gateway: GatewayProcess, keys: dict[str, str],
                                                          mocks: ProviderMocks) -> None:
    r = httpx.post(f"{gateway.v1}/responses", content=NATIVE, headers={
        "authorization": f"Bearer {keys['a1']}", "content-type": "application/json"})
    assert r.status_code == 200
    path, raw = mocks.received[-1]
    assert path == "/openai/v1/responses"
    assert raw == NATIVE.replace(b'"model": "gpt-native"', b'"model": "gpt-4.1"', 1)
    body = r.json()
    assert body["id"].startswith("resp_") and body["id"] != "resp_upstream1"  # the gateway's id, stored
    assert body["output"][0]["content"][0]["text"] == "native: hi there (1 items)"
    client = sdk(gateway, keys["a1"])
    with client.responses.stream(model="gpt-native", input="again", previous_response_id=body["id"]) as stream:
        final = stream.get_final_response()
    assert final.output_text == "native: again (3 items)"
    sent = orjson.loads(mocks.received[-1][1])
    assert "previous_response_id" not in sent
    assert sent["input"][1] == {"type": "message", "role": "assistant", "content": [
        {"type": "output_text", "text": "native: hi there (1 items)", "annotations": []}]}
    assert client.responses.retrieve(final.id).output_text == final.output_text
    # a translated turn after a native one
    assert client.responses.create(model="sonnet", input="and now?", previous_response_id=final.id
                                   ).output_text == "turn 3: and now?"
    assert ("chat/completions", 21, 7, 200) in _ledger_rows(gateway, "gpt-native")


def test_errors_are_openai_shaped_and_a_broken_stream_fails(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    client = sdk(gateway, keys["a1"])
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="error-429", input="x")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-4o-mini", input="x", previous_response_id="resp_nope")
    bad = httpx.post(f"{gateway.v1}/responses", headers={"authorization": f"Bearer {keys['a1']}"},
                     json={"model": "gpt-4o-mini", "input": 42})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    broken = httpx.post(f"{gateway.v1}/responses", content=b"{nope", headers={
        "authorization": f"Bearer {keys['a1']}", "content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    events = list(client.responses.create(model="cut-stream", input="x", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.failed"
    assert events[-1].response.error is not None  # type: ignore[union-attr]
    assert events[-1].response.id == events[0].response.id  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def open_gateway(upstream: Upstream, mocks: ProviderMocks, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[GatewayProcess]:
    """No keys, the response cache on, built-in tools refused."""
    gw = launch([], tmp_path_factory.mktemp("open"), config={
        "cache": {"enabled": True}, "responses": {"builtin_tools": "reject"}, "providers": [
            {"name": "oai", "type": "openai", "base_url": f"{mocks.url}/openai/v1", "api_key": "sk-oai-up",
             "models": [{"name": "gpt-native", "model": "gpt-4.1"}]},
            {"name": "chat", "type": "openai-compatible", "base_url": f"{upstream.url}/v1", "models": ["*"]}]})
    yield gw
    gw.stop()


def test_builtin_tools_rejected_when_configured(open_gateway: GatewayProcess, mocks: ProviderMocks) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        sdk(open_gateway, "k").responses.create(model="m", input="x", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    assert "web_search" in err.value.message
    # a deployment with the Responses API runs them itself: not refused
    native = sdk(open_gateway, "k").responses.with_raw_response.create(
        model="gpt-native", input="x", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    assert "x-gateway-dropped-tools" not in native.headers
    assert orjson.loads(mocks.received[-1][1])["tools"] == [{"type": "web_search"}]
    out = sdk(open_gateway, "k").responses.create(model="m", input="x")  # no keys: an open gateway stores for all
    assert sdk(open_gateway, "other").responses.retrieve(out.id).id == out.id


def test_cached_answers_replay_as_stored_responses(open_gateway: GatewayProcess, upstream: Upstream) -> None:
    client = sdk(open_gateway, "k")
    for stream in (False, True):
        seen = len(upstream.requests)
        answers = []
        for _ in range(2):
            raw = client.responses.with_raw_response.create(model="cached", input=f"same {stream}",
                                                            stream=stream)
            if stream:
                events = list(raw.parse())
                assert events[-1].type == "response.completed"
                answers.append(events[-1].response)  # type: ignore[union-attr]
            else:
                answers.append(raw.parse())
        assert raw.headers["x-cache"] == "HIT" and len(upstream.requests) == seen + 1
        first, second = answers
        assert first.id != second.id and first.output_text == second.output_text == "The quick brown fox jumps"
        assert client.responses.retrieve(second.id).output_text == second.output_text  # stored on a hit too


@pytest.mark.parametrize(("model", "answer", "stream", "content_type"), [
    ("gemini-flash", "gemini/generate_text.json", "gemini/stream_text.sse", "text/event-stream"),
    ("nova", "bedrock/converse_text.json", "bedrock/stream_text.bin", "application/vnd.amazon.eventstream")])
def test_gemini_and_bedrock_answer_as_responses(gateway: GatewayProcess, keys: dict[str, str], replay: ReplayServer,
                                               model: str, answer: str, stream: str, content_type: str) -> None:
    client = sdk(gateway, keys["a1"])
    replay.reply = Reply(200, (FIXTURES / answer).read_bytes())
    first = client.responses.create(model=model, input="Hi", instructions="Be brief.")
    assert first.output_text and first.usage is not None and first.usage.input_tokens > 0
    Response.model_validate(raw_json(gateway, keys["a1"], first.id).json())
    replay.reply = Reply(200, (FIXTURES / stream).read_bytes(), content_type, chunk_size=29)
    with client.responses.stream(model=model, input="And?", previous_response_id=first.id) as events:
        final = events.get_final_response()
    assert final.status == "completed" and final.output_text and final.usage is not None
    sent = replay.received[-1].body.decode()
    assert "Hi" in sent and first.output_text[:20] in sent.replace("\\", "")  # the first turn, rebuilt


def test_background_responses_are_refused_since_their_cost_cannot_be_seen(
        gateway: GatewayProcess, keys: dict[str, str], mocks: ProviderMocks) -> None:
    """`background: true` went to an OpenAI deployment as sent: OpenAI answered `queued` with no usage and
    generated (and billed) up to max_output_tokens later, which the ledger and the budget never saw."""
    before = len(mocks.received)
    for model in ("gpt-native", "m"):  # a native deployment and a translated one
        r = httpx.post(f"{gateway.v1}/responses", headers={"authorization": f"Bearer {keys['a1']}"}, json={
            "model": model, "input": "write a long story", "background": True, "max_output_tokens": 100000})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "background"
    assert len(mocks.received) == before
