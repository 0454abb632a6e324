"""The real gateway against framing ambiguities and odd requests over raw sockets: every ambiguous request is
refused (400 or a close) and never yields a second, smuggled request; trailers never act as headers; HEAD,
HTTP/1.0, h2c upgrades and Host are handled safely."""

from __future__ import annotations

import json

import pytest
from tests.conftest import GatewayProcess
from tests.security.edge_wire import MASTER_KEY, edge_gateway, exchange, get, head_and_body, statuses

__all__ = ["edge_gateway"]

# A second request hidden where a lenient parser would see the end of the first one. If it were ever served, a
# 404 naming /smuggled would come back.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
ADMIN = b"POST /api/v1/keys HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"


def assert_refused_without_smuggling(out: bytes, closed: bool, allowed: tuple[int, ...] = (400,)) -> None:
    codes = statuses(out)
    assert b"/smuggled" not in out, f"a smuggled request was served: {out!r}"
    assert len(codes) <= 1, f"more than one response: {out!r}"
    assert (codes == [] and closed) or codes[0] in allowed, f"unexpected answer: {out[:300]!r}"


AMBIGUOUS = {
    # Transfer-Encoding wins over Content-Length (RFC 9112 6.3); the connection is closed after the answer, so
    # the bytes a Content-Length-reading proxy would have seen as the next request are never read.
    "content-length-with-chunked": ADMIN + b"content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "two-content-lengths": ADMIN + b"content-length: 0\r\ncontent-length: 35\r\n\r\n" + SMUGGLED,
    "content-length-list": ADMIN + b"content-length: 0, 35\r\n\r\n" + SMUGGLED,
    "content-length-with-sign": ADMIN + b"content-length: +35\r\n\r\n" + SMUGGLED,
    "obs-fold-hides-transfer-encoding": ADMIN + b"x-a: 1\r\n transfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n"
    + SMUGGLED,
    "space-before-colon": ADMIN + b"transfer-encoding : chunked\r\ncontent-length: 0\r\n\r\n" + SMUGGLED,
    "chunked-not-last": ADMIN + b"transfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "bare-cr-in-header": ADMIN + b"x-a: 1\rcontent-length: 0\r\ncontent-length: 35\r\n\r\n" + SMUGGLED,
    "nul-in-header": ADMIN + b"x-a: 1\x00\r\ncontent-length: 0\r\n\r\n" + SMUGGLED,
}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_ambiguous_framing_is_refused_and_smuggles_nothing(edge_gateway: GatewayProcess, name: str) -> None:
    out, closed = exchange(edge_gateway.port, AMBIGUOUS[name])
    # content-length-with-chunked is read as chunked (the admin API then answers 401 for the missing key).
    allowed = (400, 401) if name == "content-length-with-chunked" else (400,)
    assert_refused_without_smuggling(out, closed, allowed)
    assert closed, "an ambiguous request must not leave the connection open for more requests"


BAD_CHUNKS = {
    "not-hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "negative": b"-1\r\nabc\r\n0\r\n\r\n",
    "overflowing": b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
    "bare-lf-in-extension": b"3;a\nb\r\nabc\r\n0\r\n\r\n",
    "size-larger-than-data": b"3\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_CHUNKS))
def test_bad_chunk_sizes_get_400_and_a_close(edge_gateway: GatewayProcess, name: str) -> None:
    # A valid first chunk, so the edge has begun reading the body when the bad one comes.
    data = ADMIN + b"transfer-encoding: chunked\r\n\r\n1\r\n{\r\n" + BAD_CHUNKS[name] + SMUGGLED
    out, closed = exchange(edge_gateway.port, data)
    assert_refused_without_smuggling(out, closed)
    assert b"Internal server error" not in out and b" 500 " not in out
    assert closed


def test_a_bad_first_chunk_gets_400_not_500(edge_gateway: GatewayProcess) -> None:
    out, closed = exchange(edge_gateway.port, ADMIN + b"transfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n")
    assert statuses(out) == [400] and b"invalid_body" in out and closed


def test_bare_lf_is_read_as_a_line_end_and_the_body_as_its_length_says(edge_gateway: GatewayProcess) -> None:
    """hyper accepts a bare LF as a line end (RFC 9112 2.2 allows it); the safe outcome is one consistent reading:
    the bytes that the declared length covers stay body, never a second request."""
    body = SMUGGLED
    data = (b"POST /api/v1/keys HTTP/1.1\nhost: 127.0.0.1\ncontent-type: application/json\n"
            b"content-length: %d\n\n" % len(body)) + body
    out, _ = exchange(edge_gateway.port, data)
    assert len(statuses(out)) == 1 and statuses(out)[0] in (400, 401) and b"/smuggled" not in out


def test_trailers_never_act_as_headers(edge_gateway: GatewayProcess) -> None:
    auth = b"authorization: Bearer %s\r\n" % MASTER_KEY.encode()
    body = json.dumps({"alias": "from-a-trailer"}).encode()
    chunked = ADMIN + b"transfer-encoding: chunked\r\ntrailer: authorization\r\n\r\n%x\r\n%s\r\n0\r\n%s\r\n" % (
        len(body), body, auth)
    out, _ = exchange(edge_gateway.port, chunked)
    assert statuses(out) == [401] and b"from-a-trailer" not in out
    # The same call with the key as a header is allowed: the 401 above is the trailer's doing.
    plain = ADMIN + auth + b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    out, _ = exchange(edge_gateway.port, plain)
    assert statuses(out) in ([200], [201]), out[:300]


def test_head_gets_no_body_and_the_connection_stays_in_step(edge_gateway: GatewayProcess) -> None:
    out, _ = exchange(edge_gateway.port, b"HEAD /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" + get("/health"))
    first_head, rest = out.split(b"\r\n\r\n", 1)
    assert first_head.startswith(b"HTTP/1.1 ")
    # The next bytes are the second response's status line: no body was sent for HEAD.
    assert rest.startswith(b"HTTP/1.1 200"), out
    assert statuses(out)[1:] == [200]


def test_head_through_pass_through_answers_without_a_body(gateway: GatewayProcess) -> None:
    out, _ = exchange(gateway.port, b"HEAD /v1/files HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" + get("/health"), wait=3)
    codes = statuses(out)
    assert len(codes) == 2 and codes[1] == 200, out[:400]
    assert out.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 200")


def test_http_1_0_gets_no_chunked_answer(edge_gateway: GatewayProcess) -> None:
    body = json.dumps({"model": "up/m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    data = (b"POST /v1/chat/completions HTTP/1.0\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer %s\r\ncontent-length: %d\r\n\r\n%s" % (MASTER_KEY.encode(), len(body), body))
    out, closed = exchange(edge_gateway.port, data, wait=5)
    headers, rest = head_and_body(out)
    assert out.startswith(b"HTTP/1.0 200") and "transfer-encoding" not in headers
    assert rest.startswith(b"data: {") and rest.rstrip().endswith(b"data: [DONE]") and closed
    out, closed = exchange(edge_gateway.port, get(version=b"HTTP/1.0"))
    assert out.startswith(b"HTTP/1.0 200") and closed  # 1.0 without keep-alive: closed after the answer


def test_an_h2c_upgrade_is_ignored_and_answered_in_http_1_1(edge_gateway: GatewayProcess) -> None:
    upgrade = b"connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    out, _ = exchange(edge_gateway.port, get(extra=upgrade))
    assert statuses(out) == [200] and b"101" not in out.split(b"\r\n", 1)[0]
    assert b'{"status":"ok"}' in out


@pytest.mark.parametrize("hosts", [b"", b"host: a\r\nhost: b\r\n", b"host: a, b\r\n"])
def test_a_missing_or_repeated_host_gets_400(edge_gateway: GatewayProcess, hosts: bytes) -> None:
    out, _ = exchange(edge_gateway.port, b"GET /health HTTP/1.1\r\n" + hosts + b"\r\n")
    assert statuses(out) == [400] and b"bad_host" in out


def test_expect_100_continue_is_refused_early_when_the_body_is_too_large(edge_gateway: GatewayProcess) -> None:
    expect = ADMIN + b"expect: 100-continue\r\n"
    out, closed = exchange(edge_gateway.port, expect + b"content-length: 999999999\r\n\r\n")
    assert statuses(out) == [413] and b"100 Continue" not in out and closed  # no body is asked for
    out, _ = exchange(edge_gateway.port, expect + b"content-length: 2\r\n\r\n", wait=1.0)
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # a body within the limit is asked for
