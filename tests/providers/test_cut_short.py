"""Streams cut short, for every provider: the client hangs up after N deltas while the upstream has more to say.

The ledger must record, as the completion, the gateway's local count of the text that reached the client
(counted on the joined text, as the provider's tokenizer sees it), marked estimated.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from llm_gateway.accounting.tokens import TokenCounter
from tests.conftest import GatewayProcess, launch
from tests.providers import anthropic_cases, azure_cases, bedrock_cases, gemini_cases, openai_compat_cases
from tests.providers.eventstream_writer import encode
from tests.providers.replay import ReplayServer, Reply

MODULES = (anthropic_cases, gemini_cases, bedrock_cases, azure_cases, openai_compat_cases)
# Word pieces as models stream them: counted delta by delta they make more tokens than the joined text does.
DELTAS = ["Hel", "lo", " wor", "ld", ", this", " is", " a", " str", "eam", " that"]
RELAYED = len(DELTAS)  # the upstream sends these and then stalls; the client leaves once it has them all
SSE = "text/event-stream"


def _openai(model: str) -> bytes:
    def chunk(delta: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 1,
                                         "model": model, "choices": [{"index": 0, "delta": delta,
                                                                      "finish_reason": None}]}) + b"\n\n"
    return chunk({"role": "assistant", "content": ""}) + b"".join(chunk({"content": t}) for t in DELTAS)


def _anthropic() -> bytes:
    def event(name: str, obj: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"
    out = event("message_start", {"type": "message_start", "message": {
        "id": "msg_cut", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 25, "output_tokens": 1}}})
    out += event("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
    for text in DELTAS:
        out += event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": text}})
    return out


def _gemini() -> bytes:
    out = b""
    for n, text in enumerate(DELTAS):  # usage metadata comes on every event; its candidate count lags behind
        out += b"data: " + orjson.dumps({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": n, "totalTokenCount": 8 + n},
            "modelVersion": "gemini-2.5-flash", "responseId": "cut"}) + b"\n\n"
    return out


def _bedrock() -> bytes:
    events = [{"event": "messageStart", "payload": {"role": "assistant"}}]
    events += [{"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": t}}}
               for t in DELTAS]
    return encode(events)


# (model the client names, model the provider knows, upstream stream, content type)
STREAMS: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("llama-3.3-70b-versatile", "llama-3.3-70b-versatile", lambda: _openai("llama-3.3-70b-versatile"), SSE),
    ("gpt-4o-azure", "my-gpt4o-deployment", lambda: _openai("gpt-4o"), SSE),
    ("claude", "claude-sonnet-4-5", _anthropic, SSE),
    ("flash", "gemini-2.5-flash", _gemini, SSE),
    ("sonnet", bedrock_cases.CLAUDE, _bedrock, "application/vnd.amazon.eventstream"),
]


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ledger_gateway(replay: ReplayServer, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[GatewayProcess, Path]]:
    providers = [{**config, "base_url": config["base_url"].format(replay=replay.url)}
                 for module in MODULES for config in module.PROVIDERS]
    folder = tmp_path_factory.mktemp("cut-short")
    db = folder / "ledger.db"
    gw = launch([], folder, config={"providers": providers,
                                    "database": {"url": f"sqlite:///{db}", "ledger_flush_interval_s": 0.1}})
    yield gw, db
    gw.stop()


def _row(db: Path, request_id: str) -> tuple[int, int, int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db, timeout=10) as conn:
                try:
                    rows = conn.execute("SELECT prompt_tokens, completion_tokens, estimated FROM gw_usage "
                                        "WHERE request_id = ?", (request_id,)).fetchall()
                except sqlite3.OperationalError:  # the table is not there yet
                    rows = []
            if rows:
                return rows[0]
        time.sleep(0.05)
    pytest.fail(f"no ledger row for {request_id}")


def _relayed_texts(response: httpx.Response, n: int) -> list[str]:
    texts: list[str] = []
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = orjson.loads(line[6:])
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                texts.append(text)
        if len(texts) >= n:
            break
    return texts


@pytest.mark.parametrize("model,upstream_model,stream,content_type", STREAMS, ids=[s[0] for s in STREAMS])
def test_stream_cut_short_is_counted_from_what_was_relayed(
        model: str, upstream_model: str, stream: Callable[[], bytes], content_type: str,
        ledger_gateway: tuple[GatewayProcess, Path], replay: ReplayServer) -> None:
    gw, db = ledger_gateway
    replay.reply = Reply(200, stream(), content_type, hold_open=True)
    request_id = f"cut-{model}-{time.monotonic_ns()}"
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "Tell me a story"}]}
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", f"{gw.v1}/chat/completions", json=body, headers={"x-request-id": request_id}) as response:
        assert response.status_code == 200
        texts = _relayed_texts(response, RELAYED)
    assert texts == DELTAS[:RELAYED]
    counter = TokenCounter()
    expected = counter.count_text("".join(texts), upstream_model)
    assert expected < counter.count_texts(texts, upstream_model)  # joined, not delta by delta
    _prompt, completion, estimated = _row(db, request_id)
    assert (completion, bool(estimated)) == (expected, True)


def test_native_messages_stream_cut_short_is_counted_from_what_was_relayed(
        ledger_gateway: tuple[GatewayProcess, Path], replay: ReplayServer) -> None:
    """/v1/messages to an anthropic provider relays the events as they are; a cut-short stream still counts."""
    gw, db = ledger_gateway
    replay.reply = Reply(200, _anthropic(), SSE, hold_open=True)
    request_id = f"cut-native-{time.monotonic_ns()}"
    body = {"model": "claude", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "Tell me a story"}]}
    texts: list[str] = []
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", f"{gw.url}/v1/messages", json=body, headers={"x-request-id": request_id}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = orjson.loads(line[6:])
                if event.get("type") == "content_block_delta":
                    texts.append(event["delta"]["text"])
            if len(texts) >= RELAYED:
                break
    assert texts == DELTAS
    expected = TokenCounter().count_text("".join(texts), "claude-sonnet-4-5")
    prompt, completion, estimated = _row(db, request_id)
    assert (prompt, completion, bool(estimated)) == (25, expected, True)  # the prompt as the provider counted it
