"""Limits through HTTP: genai-gateway's per-user token limit on Redis, config rules in memory, headers, settle."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis
from tests.conftest import GatewayProcess, metric_value, upstream_args
from tests.upstream import Upstream

REDIS_URL = "redis://127.0.0.1:6379/13"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
PROMPT = 17  # MESSAGES counted locally (cl100k); the test upstream reports 11 + 5 = 16 tokens of real usage
REAL = 16


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"test-limits-{uuid.uuid4().hex[:8]}:"
    yield prefix
    admin = redis.Redis.from_url(REDIS_URL)
    keys = list(admin.scan_iter(match=prefix + "*"))
    if keys:
        admin.delete(*keys)
    admin.close()


def chat(gw: GatewayProcess, user: str, **kw: object) -> httpx.Response:
    return httpx.post(f"{gw.v1}/chat/completions", headers={"user": user},
                      json={"model": "m", "messages": MESSAGES, **kw})


def test_genai_flags_limit_user_tokens_in_redis(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream,
                                                redis_prefix: str) -> None:
    gw = gateway_factory([*upstream_args(upstream), "--enable-rate-limiting", "--rate-limiting-max-prompt-tokens",
                          "100", "--rate-limiting-window-duration-size-min", "1",
                          "--rate-limiting-redis-connection-string", REDIS_URL],
                         config={"limits": {"redis_prefix": redis_prefix}})
    sdk = openai.OpenAI(base_url=gw.v1, api_key="k", max_retries=0)
    remaining = []
    for _ in range(3):
        raw = sdk.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, max_tokens=50, extra_headers={"user": "alice"})  # type: ignore[arg-type]
        assert raw.parse().usage.total_tokens == REAL  # type: ignore[union-attr]
        assert raw.headers["x-ratelimit-limit-tokens"] == "100"
        assert "x-ratelimit-limit-requests" not in raw.headers  # the genai limit counts tokens only
        reset = raw.headers["x-ratelimit-reset-tokens"]
        assert reset in ("1m0s", "1m1s", "1m2s", "1m3s"), reset
        remaining.append(int(raw.headers["x-ratelimit-remaining-tokens"]))
    # Each request reserves 17 + 50 and settles to its real 16: what is counted is what is checked.
    assert remaining == [100 - 67, 100 - REAL - 67, 100 - 2 * REAL - 67]
    with pytest.raises(openai.RateLimitError) as exc:
        sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=50,  # type: ignore[arg-type]
                                    extra_headers={"user": "alice"})
    err = exc.value
    assert err.code == "rate_limit_exceeded" and err.status_code == 429
    assert "'per_user_tokens' (tokens per 1m per user) for user 'alice'" in err.message
    assert "tokens limit 100, used 48, requested 67" in err.message
    assert 55 <= int(err.response.headers["retry-after"]) <= 63
    assert err.response.headers["x-ratelimit-remaining-tokens"] == "52"
    # The counter really lives in Redis under the configured prefix, one hash per user.
    admin = redis.Redis.from_url(REDIS_URL)
    fields: dict[bytes, bytes] = admin.hgetall(f"{redis_prefix}per_user_tokens|{{alice}}")  # type: ignore[assignment]
    admin.close()
    buckets = sum(int(v) for k, v in fields.items() if k.startswith(b"t") and k[1:].isdigit())
    assert buckets == 3 * REAL
    assert int(fields[b"t-3"]) == buckets  # the running total the script keeps beside the buckets
    bob = chat(gw, "bob", max_tokens=50)
    assert bob.status_code == 200 and bob.headers["x-ratelimit-remaining-tokens"] == "33"
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_rate_limited_requests_total",
                        {"scope": "user", "limit": "per_user_tokens"}) == 1


def test_redis_leases_serve_from_the_gateway_and_go_back_at_shutdown(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, redis_prefix: str) -> None:
    """Far from the limit one Redis call reserves 20 requests' worth; the next requests are served from that
    lease with exact headers, and what is left goes back to Redis when the gateway stops."""
    # An hour's window (buckets of 3 minutes) and a long lease: the test never sees a lease end on its own.
    rules = [{"name": "rpm", "scope": "user", "window": "1h", "requests": 100_000, "tokens": 10_000_000}]
    gw = gateway_factory(upstream_args(upstream), config={
        "redis": {"url": REDIS_URL},
        "limits": {"rules": rules, "redis_prefix": redis_prefix, "redis_lease_s": 30}})
    admin = redis.Redis.from_url(REDIS_URL)

    def charged() -> tuple[int, int]:
        fields: dict[bytes, bytes] = admin.hgetall(f"{redis_prefix}rpm|{{alice}}")  # type: ignore[assignment]
        return (sum(int(v) for k, v in fields.items() if k.startswith(b"r") and k[1:].isdigit()),
                sum(int(v) for k, v in fields.items() if k.startswith(b"t") and k[1:].isdigit()))

    reserved = PROMPT + 50
    for i in range(1, 6):
        r = chat(gw, "alice", max_tokens=50)
        assert r.status_code == 200
        assert r.headers["x-ratelimit-remaining-requests"] == str(100_000 - i)
        # Every earlier request settled to its real 16 tokens; this one holds its estimate.
        assert r.headers["x-ratelimit-remaining-tokens"] == str(10_000_000 - (i - 1) * REAL - reserved)
    assert charged() == (1 + 20, reserved * 21), "one request and a lease of 20 charged in Redis, in one call"
    assert gw.stop() == 0
    assert charged() == (5, 5 * REAL), "what the lease did not hand out went back at shutdown"
    admin.close()


def test_an_answer_from_the_cache_carries_the_limit_headers_too(gateway_factory: Callable[..., GatewayProcess],
                                                                 upstream: Upstream) -> None:
    """The limit headers are written while an upstream works; a cached answer has none working, yet has them."""
    rules = [{"name": "per-user", "scope": "user", "window": "1h", "requests": 10}]
    gw = gateway_factory(upstream_args(upstream), config={"limits": {"rules": rules}, "cache": {"enabled": True}})
    text = f"cached {uuid.uuid4()}"
    for i, status in enumerate(("MISS", "HIT"), start=1):
        r = httpx.post(f"{gw.v1}/chat/completions", headers={"user": "dana"},
                       json={"model": "m", "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200 and r.headers["x-cache"] == status
        assert r.headers["x-ratelimit-remaining-requests"] == str(10 - i)


def test_config_rules_in_memory_name_the_tightest_limit(gateway_factory: Callable[..., GatewayProcess],
                                                        upstream: Upstream) -> None:
    rules = [{"name": "user-daily", "scope": "user", "window": "1d", "requests": 2},
             {"name": "model-m", "scope": "model", "window": "1m", "requests": 3, "models": ["m"]}]
    gw = gateway_factory(upstream_args(upstream), config={"limits": {"rules": rules}})
    first = chat(gw, "alice")
    assert first.status_code == 200
    assert (first.headers["x-ratelimit-limit-requests"], first.headers["x-ratelimit-remaining-requests"]) == \
        ("2", "1")
    assert "x-ratelimit-limit-tokens" not in first.headers
    with httpx.stream("POST", f"{gw.v1}/chat/completions", headers={"user": "alice"},
                      json={"model": "m", "messages": MESSAGES, "stream": True}) as streamed:
        assert streamed.status_code == 200 and streamed.headers["x-ratelimit-remaining-requests"] == "0"
        # the stream's head, rendered while the upstream worked, names the deployment that answered too
        assert streamed.headers["x-gateway-deployment"] == "openai/m" and streamed.headers["x-gateway-attempts"] == "1"
        assert b"[DONE]" in b"".join(streamed.iter_bytes())
    refused = chat(gw, "alice")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("Rate limit reached on limit 'user-daily' (requests per 1d per user)")
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert int(refused.headers["retry-after"]) > 86000
    # bob has his own daily count, but the model's per-minute limit (3) is now the tightest, then exhausted.
    bob = chat(gw, "bob")
    assert bob.status_code == 200
    assert (bob.headers["x-ratelimit-limit-requests"], bob.headers["x-ratelimit-remaining-requests"]) == ("3", "0")
    refused = chat(gw, "bob")
    assert refused.status_code == 429 and "'model-m'" in refused.json()["error"]["message"]
    assert chat(gw, "carol", model="other").status_code == 200  # the model rule names only "m"
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_rate_limited_requests_total",
                        {"scope": "user", "limit": "user-daily"}) == 1
    assert metric_value(metrics, "llm_gateway_rate_limited_requests_total",
                        {"scope": "model", "limit": "model-m"}) == 1


def test_settle_charges_what_was_streamed_and_releases_failures(gateway_factory: Callable[..., GatewayProcess],
                                                                upstream: Upstream) -> None:
    rules = [{"name": "tpm", "scope": "user", "window": "1h", "tokens": 1000}]
    gw = gateway_factory(upstream_args(upstream), config={"limits": {"rules": rules, "completion_estimate": 200}})
    with httpx.stream("POST", f"{gw.v1}/chat/completions", headers={"user": "u"},
                      json={"model": "cut-stream", "messages": MESSAGES, "stream": True, "max_tokens": 100}) as r:
        assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - PROMPT - 100)
        body = b"".join(r.iter_bytes())
    assert b'"error"' in body and b"[DONE]" not in body
    # The cut stream settled to what was streamed: 17 prompt + 3 words; no max_tokens: 200 are reserved.
    after_cut = chat(gw, "u", model="error-500")
    assert after_cut.status_code == 500
    assert after_cut.headers["x-ratelimit-remaining-tokens"] == str(1000 - (PROMPT + 3) - (PROMPT + 200))
    # The failed call used nothing, so its whole reservation came back.
    embeddings = httpx.post(f"{gw.v1}/embeddings", headers={"user": "u"}, json={"model": "e", "input": "hello"})
    assert embeddings.status_code == 200
    assert embeddings.headers["x-ratelimit-remaining-tokens"] == str(1000 - (PROMPT + 3) - 1)


def test_virtual_key_rpm_and_tpm_from_the_admin_api(gateway_factory: Callable[..., GatewayProcess],
                                                    upstream: Upstream, tmp_path: Path) -> None:
    gw = gateway_factory(upstream_args(upstream), config={
        "auth": {"master_key": "sk-master"}, "database": {"url": f"sqlite:///{tmp_path / 'keys.db'}"}})
    admin = {"authorization": "Bearer sk-master"}
    made = httpx.post(f"{gw.url}/api/v1/keys", headers=admin, json={"alias": "limited", "rpm_limit": 2,
                                                                     "tpm_limit": 10_000})
    assert made.status_code < 300, made.text
    limited = {"authorization": f"Bearer {made.json()['key']}"}
    free = {"authorization": f"Bearer {httpx.post(f'{gw.url}/api/v1/keys', headers=admin, json={}).json()['key']}"}
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 10}
    first = httpx.post(f"{gw.v1}/chat/completions", headers=limited, json=body)
    assert first.status_code == 200
    assert (first.headers["x-ratelimit-remaining-requests"], first.headers["x-ratelimit-remaining-tokens"]) == \
        ("1", str(10_000 - PROMPT - 10))
    assert httpx.post(f"{gw.v1}/chat/completions", headers=limited, json=body).status_code == 200
    refused = httpx.post(f"{gw.v1}/chat/completions", headers=limited, json=body)
    assert refused.status_code == 429
    assert "'virtual-key/60s' (requests and tokens per 1m per key)" in refused.json()["error"]["message"]
    other = httpx.post(f"{gw.v1}/chat/completions", headers=free, json=body)
    assert other.status_code == 200 and "x-ratelimit-limit-requests" not in other.headers
