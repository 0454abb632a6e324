"""Retry classification, backoff with jitter, Retry-After; the x-gateway request options."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from llm_gateway.errors import BadRequest, GatewayError, UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from llm_gateway.routing.options import parse_options
from llm_gateway.routing.retry import CONTEXT, FATAL, RETRY, Backoff, classify, retry_after
from llm_gateway.settings import RetryConfig


def http_error(status: int, raw: bytes = b"{}", **headers: str) -> UpstreamHTTPError:
    return UpstreamHTTPError(status, f"upstream returned HTTP {status}", raw, headers=headers)


def test_classify() -> None:
    assert classify(UpstreamUnavailable("reset")) == RETRY
    assert classify(UpstreamTimeout("slow")) == RETRY
    for status in (408, 429, 500, 502, 503, 504, 529):
        assert classify(http_error(status)) == RETRY, status
    for status in (400, 401, 403, 404, 422):
        assert classify(http_error(status)) == FATAL, status
    ctx_err = http_error(400, b'{"error":{"message":"too long","code":"context_length_exceeded"}}')
    assert classify(ctx_err) == CONTEXT
    assert classify(GatewayError("This model's maximum context length is 8192 tokens", status=400)) == CONTEXT


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after(http_error(429, **{"retry-after": "2"})) == 2.0
    assert retry_after(http_error(429)) is None
    assert retry_after(http_error(429, **{"retry-after": "soon"})) is None
    in_ten = retry_after(http_error(503, **{"retry-after": formatdate(time.time() + 10,
                                                                      usegmt=True)}))
    assert in_ten is not None and 8 < in_ten <= 10


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    backoff = Backoff(RetryConfig(backoff_s=0.1, max_backoff_s=0.5, max_retry_after_s=3), random.Random(3))
    for retry, base in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (8, 0.5)):
        waits = [backoff.delay(retry, None) for _ in range(200)]
        assert all(w is not None and base / 2 <= w <= base for w in waits), retry
        assert max(w for w in waits if w is not None) - min(w for w in waits if w is not None) > base / 4
    assert backoff.delay(1, http_error(429, **{"retry-after": "2"})) == 2.0, "Retry-After is honoured"
    assert backoff.delay(1, http_error(429, **{"retry-after": "30"})) is None, "too long: move on instead"


def test_options_absent_is_none_and_body_untouched() -> None:
    body = {"model": "m", "messages": []}
    assert parse_options({"content-type": "application/json"}, body) is None
    assert body == {"model": "m", "messages": []}


def test_options_from_body_are_stripped_and_win_over_headers() -> None:
    body = {"model": "m", "x-gateway": {"timeout": 5, "retries": 2, "fallbacks": ["smart"], "provider": "b",
                                        "metadata": {"team": "x"}, "cache": {"ttl": 60}, "trace": True}}
    opts = parse_options({"x-gateway-timeout": "9", "x-gateway-retries": "1"}, body)
    assert "x-gateway" not in body
    assert opts is not None and opts.stripped
    assert (opts.timeout, opts.retries, opts.fallbacks, opts.provider) == (5.0, 2, ["smart"], "b")
    assert opts.metadata == {"team": "x"} and opts.cache == {"ttl": 60} and opts.extra == {"trace": True}


def test_timeout_as_an_object_caps_each_phase() -> None:
    opts = parse_options({}, {"x-gateway": {"timeout": {"first_token": 2, "idle": 0.5}}})
    assert opts is not None and opts.timeout is None and opts.phases == {"first_token": 2.0, "idle": 0.5}
    with pytest.raises(BadRequest, match="unknown timeout 'read'"):
        parse_options({}, {"x-gateway": {"timeout": {"read": 2}}})


def test_options_from_headers() -> None:
    opts = parse_options({"x-gateway-fallbacks": "smart, cheap", "x-gateway-metadata": '{"a": 1}',
                          "x-gateway-cache": "no-store", "x-gateway-provider": "a"}, {"model": "m"})
    assert opts is not None and not opts.stripped
    assert opts.fallbacks == ["smart", "cheap"] and opts.metadata == {"a": 1} and opts.cache == "no-store"


@pytest.mark.parametrize("headers,body,param", [
    ({"x-gateway-timeout": "abc"}, {}, "x-gateway.timeout"),
    ({"x-gateway-timeout": "-1"}, {}, "x-gateway.timeout"),
    ({"x-gateway-retries": "1.5"}, {}, "x-gateway.retries"),
    ({"x-gateway-metadata": "[1]"}, {}, "x-gateway.metadata"),
    ({}, {"x-gateway": {"fallbacks": "smart"}}, "x-gateway.fallbacks"),
    ({}, {"x-gateway": "yes"}, "x-gateway"),
])
def test_invalid_options_are_400(headers: dict[str, str], body: dict[str, object], param: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_options(headers, body)
    assert exc.value.param == param and exc.value.status == 400
