"""Framing on the way back: bytes on an idle pooled connection, bodies that end with the connection, IPv6 Host."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess
from tests.security.raw_upstream import RawRequest, RawUpstream, RawUpstreamThread, Step, chat_json, response

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
EVENTS = [b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
          b'"delta":{"content":"%s"},"finish_reason":null}]}\n\n' % word for word in (b"one", b"two")]
USAGE = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
         b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n')


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstreamThread]:
    servers = RawUpstreamThread()
    yield servers
    servers.stop()


def provider(up: RawUpstream, **extra: object) -> dict[str, object]:
    return {"providers": [{"name": "p", "type": "openai-compatible", "base_url": f"{up.url}/v1", "models": ["*"],
                           "timeouts": {"first_token": 3}, **extra}]}


def test_bytes_sent_on_an_idle_pooled_connection_never_reach_the_next_client(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread) -> None:
    planted = response(chat_json("planted by the upstream while idle"))

    def answer(req: RawRequest) -> list[Step]:
        if req.conn == 1:  # answers, then writes a whole second answer nobody asked for on the idle connection
            return [response(chat_json(f"answer {len(up.requests)}")), 0.2, planted]
        return [response(chat_json(f"answer {len(up.requests)}"))]

    up = raw.start(RawUpstream(answer=answer))
    gw = gateway_factory(config=provider(up))
    client = openai.OpenAI(base_url=gw.v1, api_key="k", max_retries=0, timeout=10)
    first = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    time.sleep(0.6)  # the planted bytes arrive while the connection sits in the pool
    second = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert first.choices[0].message.content == "answer 1"
    assert second.choices[0].message.content == "answer 2"
    assert [q.conn for q in up.requests] == [1, 2]  # the tainted connection was dropped, not reused
    assert "idle connection" in gw.log()


def close_delimited(body: list[bytes], ctype: bytes) -> list[Step]:
    """An answer with neither Content-Length nor chunked framing: the body ends when the connection closes."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nConnection: close\r\n\r\n" % ctype
    steps: list[Step] = [head]
    for part in body:
        steps += [part, 0.05]
    return [*steps, None]


def test_a_body_delimited_by_the_connection_close_is_read_whole(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread) -> None:
    body = chat_json("the whole answer")
    up = raw.start(RawUpstream(answer=lambda req: close_delimited([body[:20], body[20:]], b"application/json")))
    gw = gateway_factory(config=provider(up))
    client = openai.OpenAI(base_url=gw.v1, api_key="k", max_retries=0, timeout=10)
    for _ in range(2):  # and the next request opens a fresh connection
        reply = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert reply.choices[0].message.content == "the whole answer"
    assert reply.usage is not None and reply.usage.total_tokens == 4


def test_a_stream_delimited_by_the_connection_close_ends_cleanly(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread) -> None:
    up = raw.start(RawUpstream(
        answer=lambda req: close_delimited([*EVENTS, USAGE, b"data: [DONE]\n\n"], b"text/event-stream")))
    gw = gateway_factory(config=provider(up))
    with httpx.stream("POST", f"{gw.v1}/chat/completions", json={**CHAT, "stream": True}, timeout=10) as r:
        text = b"".join(r.iter_bytes()).decode()
    assert r.status_code == 200
    assert text.rstrip().endswith("data: [DONE]"), text
    assert '"error"' not in text
    assert '"one"' in text and '"two"' in text


def test_an_ipv6_upstream_gets_a_bracketed_host_header(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread) -> None:
    try:
        socket.socket(socket.AF_INET6).close()
        up = raw.start(RawUpstream(host="::1"))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    gw = gateway_factory(config=provider(up))
    r = httpx.post(f"{gw.v1}/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 200, r.text
    assert up.requests[0].header("host") == f"[::1]:{up.port}"


def test_a_head_answer_ends_with_its_head_whatever_its_content_length(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
    up = raw.start(RawUpstream(answer=lambda req: [head] if req.line.startswith(b"HEAD") else [response(b"{}")]))
    gw = gateway_factory(config=provider(up, options={"passthrough": True}))
    for _ in range(2):  # and the connection serves the next request
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(b"HEAD /v1/files HTTP/1.1\r\nHost: gw\r\n\r\n")
            started = time.monotonic()
            status = sock.makefile("rb").readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        assert time.monotonic() - started < 2  # not the 3 s first-token timeout
    assert httpx.get(f"{gw.v1}/files", timeout=10).json() == {}
    assert [q.conn for q in up.requests] == [1, 1, 1]


def test_an_interim_answer_is_skipped_for_the_response_after_it(
        gateway_factory: Callable[..., GatewayProcess], raw: RawUpstreamThread) -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    up = raw.start(RawUpstream(answer=lambda req: [hints, 0.05, response(chat_json("after the hints"))]))
    gw = gateway_factory(config=provider(up))
    r = httpx.post(f"{gw.v1}/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "after the hints"
