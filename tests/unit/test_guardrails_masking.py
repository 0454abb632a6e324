"""Placeholders and stream filtering: restored across any split, held back no longer than needed, and masked
or blocked text never released."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from llm_gateway.guardrails.base import REVERSIBLE, GuardrailBlocked, Parts, Span
from llm_gateway.guardrails.checks import patterns
from llm_gateway.guardrails.flow import RequestGuard, StreamGuard
from llm_gateway.guardrails.masking import Restorer, Vault, apply
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import CHAT
from llm_gateway.server.http import Request
from llm_gateway.settings import GuardrailConfig

ORIGINALS = {"<EMAIL_ADDRESS_1>": "jane@example.com", "<CREDIT_CARD_1>": "4111 1111 1111 1111",
             "<PERSON_1>": 'Jo "JJ" Doe'}


def test_vault_numbers_values_and_reuses_them() -> None:
    vault = Vault()
    text = "a@x.io and b@x.io and a@x.io"
    spans = [(Span(0, 6, "EMAIL"), REVERSIBLE), (Span(11, 17, "EMAIL"), REVERSIBLE), (Span(22, 28, "EMAIL"), "mask")]
    assert apply(text, spans, vault) == "<EMAIL_1> and <EMAIL_2> and <EMAIL>"
    assert vault.originals == {"<EMAIL_1>": "a@x.io", "<EMAIL_2>": "b@x.io"}


@pytest.mark.parametrize("cut", range(1, len("see <EMAIL_ADDRESS_1> now")))
def test_restorer_joins_a_placeholder_split_anywhere(cut: int) -> None:
    text = "see <EMAIL_ADDRESS_1> now"
    restorer = Restorer(ORIGINALS)
    first, second = restorer.feed(text[:cut]), restorer.feed(text[cut:])
    assert first + second + restorer.flush() == "see jane@example.com now"
    assert "<" not in first and "<" not in second


def test_restorer_holds_only_a_possible_beginning() -> None:
    restorer = Restorer(ORIGINALS)
    assert restorer.feed("a < b and <CRE") == "a < b and "  # '< b' cannot become a placeholder
    assert restorer.feed("X") == "<CREX"  # not a placeholder after all: released at once
    assert restorer.feed("<EMAIL_ADDRESS_1>") == "jane@example.com"


def frames(texts: list[str], finish: bool = True) -> bytes:
    out = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    out += [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in texts]
    if finish:
        out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", **o}) + b"\n\n"
                    for o in out) + b"data: [DONE]\n\n"


def content(data: bytes) -> str:
    text = ""
    for event in data.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in orjson.loads(event[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def guard(configs: list[dict[str, Any]]) -> RequestGuard:
    ctx = RequestContext(Request("POST", "/v1/chat/completions", "", {}, b"{}", "t"), "r", CHAT)
    checks = tuple(patterns.build(GuardrailConfig.model_validate(c), Parts()) for c in configs)
    return RequestGuard(ctx, checks)


async def run(shield: StreamGuard, data: bytes, piece: int) -> bytes:
    out = b""
    for i in range(0, len(data), piece):  # the decoder's output in arbitrary pieces
        out += await shield.feed(data[i:i + piece])
    return out + await shield.finish()


def test_stream_restores_placeholders_and_keeps_other_events() -> None:
    g = guard([{"name": "k", "type": "keywords", "keywords": ["zzz"], "action": "mask"}])
    g.vault = Vault()
    g.vault.originals.update(ORIGINALS)
    shield = g.stream()
    assert shield is not None
    text = "card <CREDIT_CARD_1>, mail <EMAIL_ADDRESS_1>."
    out = asyncio.run(run(shield, frames([text[i:i + 3] for i in range(0, len(text), 3)]), 50))
    assert content(out) == "card 4111 1111 1111 1111, mail jane@example.com."
    assert out.endswith(b"data: [DONE]\n\n") and b'"finish_reason":"stop"' in out


def test_stream_output_mask_and_block_never_release_the_text() -> None:
    masking = guard([{"name": "k", "type": "keywords", "keywords": ["hunter2"], "action": "mask",
                      "mode": ["post_call"], "window_chars": 16}])
    text = "the password is hunter2 and again hunter2 at the end of a long enough answer"
    shield = masking.stream()
    assert shield is not None
    out = asyncio.run(run(shield, frames([text[i:i + 2] for i in range(0, len(text), 2)]), 7))
    assert content(out) == text.replace("hunter2", "<KEYWORD>")

    blocking = guard([{"name": "stop", "type": "keywords", "keywords": ["hunter2"], "action": "block",
                       "mode": ["post_call"], "window_chars": 16}])
    shield = blocking.stream()
    assert shield is not None
    sent = b""
    data = frames([text[i:i + 2] for i in range(0, len(text), 2)])
    for i in range(0, len(data), 7):
        sent += asyncio.run(shield.feed(data[i:i + 7]))
        if shield.blocked is not None:
            break
    assert isinstance(shield.blocked, GuardrailBlocked) and "hunter" not in content(sent)


def test_whole_answer_restores_text_and_tool_arguments() -> None:
    g = guard([{"name": "k", "type": "keywords", "keywords": ["zzz"], "action": "mask"}])
    g.vault = Vault()
    g.vault.originals.update(ORIGINALS)
    arguments = '{"to": "<EMAIL_ADDRESS_1>", "name": "<PERSON_1>"}'
    call = {"id": "c", "type": "function", "function": {"name": "send", "arguments": arguments}}
    message = {"role": "assistant", "content": "mail <EMAIL_ADDRESS_1>", "tool_calls": [call]}
    answer = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    out = orjson.loads(asyncio.run(g.answer(orjson.dumps(answer))))
    message = out["choices"][0]["message"]
    assert message["content"] == "mail jane@example.com"
    arguments = orjson.loads(message["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"to": "jane@example.com", "name": 'Jo "JJ" Doe'}  # escaped inside the JSON string


def test_a_guarded_stream_holds_back_at_most_the_window() -> None:
    """The delay to the first byte is bounded: text goes out once window_chars + RELEASE_STEP characters came."""
    from llm_gateway.guardrails.flow import RELEASE_STEP

    g = guard([{"name": "k", "type": "keywords", "keywords": ["never-there"], "action": "block",
                "mode": ["post_call"], "window_chars": 16}])
    shield = g.stream()
    assert shield is not None
    released_at = None
    for n in range(1, 100):
        out = asyncio.run(shield.feed(frames(["a"], finish=False).split(b"data: [DONE]")[0].split(b"\n\n", 1)[1]))
        if content(out):
            released_at = n
            break
    assert released_at == 16 + RELEASE_STEP
    assert content(out) == "a" * RELEASE_STEP  # the window's 16 stay behind until more comes or the end


def test_stream_restores_tool_call_arguments_split_across_events() -> None:
    g = guard([{"name": "k", "type": "keywords", "keywords": ["zzz"], "action": "mask"}])
    g.vault = Vault()
    g.vault.originals.update(ORIGINALS)
    shield = g.stream()
    assert shield is not None
    arguments = '{"to": "<EMAIL_ADDRESS_1>", "name": "<PERSON_1>"}'
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "send", "arguments": ""}}]},
        "finish_reason": None}]}]
    events += [{"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": arguments[i:i + 5]}}]}, "finish_reason": None}]}
        for i in range(0, len(arguments), 5)]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    out = asyncio.run(run(shield, data, 9))
    joined = ""
    for event in out.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for call in orjson.loads(event[6:])["choices"][0]["delta"].get("tool_calls") or ():
                joined += call["function"].get("arguments") or ""
    assert orjson.loads(joined) == {"to": "jane@example.com", "name": 'Jo "JJ" Doe'}
    assert shield.held is None  # no output check: restored as they come, nothing held


def tool_events(parts: list[tuple[int, str]], finish: bool = True, done: bool = True,
                content: str = "") -> bytes:
    """A chat stream of tool-call deltas: (call index, arguments piece); a call's first part also names it."""
    events: list[dict[str, Any]] = [{"role": "assistant", "content": content or None}]
    started: set[int] = set()
    for tool, piece in parts:
        call: dict[str, Any] = {"index": tool, "function": {"arguments": piece}}
        if tool not in started:
            started.add(tool)
            call.update(id=f"c{tool}", type="function", function={"name": "f", "arguments": piece})
        events.append({"tool_calls": [call]})
    frames_: list[Any] = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in events]
    if finish:
        frames_.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    out = b"".join(b"data: " + orjson.dumps(f) + b"\n\n" for f in frames_)
    return out + (b"data: [DONE]\n\n" if done else b"")


def arguments(data: bytes) -> tuple[dict[int, str], dict[int, int]]:
    """Each call's arguments as a client joins them, and in how many non-empty pieces they came."""
    joined: dict[int, str] = {}
    pieces: dict[int, int] = {}
    for event in data.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in orjson.loads(event[6:])["choices"]:
                for call in choice["delta"].get("tool_calls") or ():
                    piece = call.get("function", {}).get("arguments") or ""
                    joined[call["index"]] = joined.get(call["index"], "") + piece
                    pieces[call["index"]] = pieces.get(call["index"], 0) + bool(piece)
    return joined, pieces


STOP = [{"name": "stop", "type": "keywords", "keywords": ["hunter2"], "action": "block", "mode": ["post_call"]}]


@pytest.mark.parametrize(("finish", "done"), [(True, True), (False, True), (False, False)])
def test_stream_tool_arguments_are_held_until_the_call_is_complete(finish: bool, done: bool) -> None:
    """Complete: the next call starts, the choice's finish_reason, [DONE], or the stream's end."""
    parts = [(0, '{"a": "hun'), (0, 'ter"}'), (1, '{"b":'), (1, ' "x"}')]
    shield = guard(STOP).stream()
    assert shield is not None
    out = asyncio.run(run(shield, tool_events(parts, finish, done), 11))
    assert shield.blocked is None and arguments(out) == ({0: '{"a": "hunter"}', 1: '{"b": "x"}'}, {0: 1, 1: 1})
    assert out.count(b'"id":"c0"') == 1 and out.count(b'"name":"f"') == 2  # the calls' starts still go

    blocked = [(0, '{"a": "x"}'), (1, '{"b": "hun'), (1, 'ter2"}')]
    shield = guard(STOP).stream()
    assert shield is not None
    out = asyncio.run(run(shield, tool_events(blocked, finish, done), 11))
    assert isinstance(shield.blocked, GuardrailBlocked) and b"hun" not in out and b"ter2" not in out


def test_stream_tool_arguments_sent_late_are_checked_with_the_rest_of_their_call() -> None:
    """Not OpenAI's order, but a provider could: pieces of call 0 after call 1 began."""
    parts = [(0, '{"a": "hun'), (1, '{}'), (0, 'ter2"}')]
    shield = guard(STOP).stream()
    assert shield is not None
    out = asyncio.run(run(shield, tool_events(parts), 9))
    assert isinstance(shield.blocked, GuardrailBlocked) and b"ter2" not in out


def test_stream_text_and_tool_arguments_are_checked_each_in_its_way() -> None:
    masking = [{"name": "m", "type": "keywords", "keywords": ["hunter2"], "action": "mask", "mode": ["post_call"],
                "window_chars": 16}]
    text = "a long enough text: hunter2 is in it, and it goes on for a while longer still"
    shield = guard(masking).stream()
    assert shield is not None
    data = frames([text[i:i + 3] for i in range(0, len(text), 3)], finish=False).split(b"data: [DONE]")[0]
    data += tool_events([(0, '{"p": "hunter2"}')])
    out = asyncio.run(run(shield, data, 13))
    assert content(out) == text.replace("hunter2", "<KEYWORD>")
    assert arguments(out)[0] == {0: '{"p": "<KEYWORD>"}'}


def test_a_whole_text_check_on_a_stream_holds_the_answer_until_its_end() -> None:
    config = GuardrailConfig(name="hook", type="webhook", url="http://127.0.0.1:9/x", mode=["post_call"])
    calls: list[list[str]] = []

    class Counting(patterns.Check):
        async def scan(self, texts: list[str], stage: str) -> list[list[Span]]:
            calls.append(texts)
            return [[] for _ in texts]

    ctx = RequestContext(Request("POST", "/v1/chat/completions", "", {}, b"{}", "t"), "r", CHAT)
    shield = RequestGuard(ctx, (Counting(config),)).stream()
    assert shield is not None
    text = "a fairly long answer " * 20
    out = asyncio.run(run(shield, frames([text[i:i + 4] for i in range(0, len(text), 4)]), 30))
    assert content(out) == text and calls == [[text]]  # one check, of the whole answer
