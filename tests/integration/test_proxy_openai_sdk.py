"""The core proxy through the official `openai` SDK, against the local upstream."""

from __future__ import annotations

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess, metric_value
from tests.upstream import Upstream


def client(gw: GatewayProcess, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="sk-client-key", max_retries=0, **kw)  # type: ignore[arg-type]


MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


def test_chat_completion_sync(gateway: GatewayProcess, upstream: Upstream) -> None:
    out = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
                                                  user="alice")
    assert out.choices[0].message.content == "The quick brown fox jumps"
    assert out.usage is not None and out.usage.prompt_tokens == 11 and out.usage.completion_tokens == 5
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-client-key"  # forwarded: no api_key configured
    assert sent.body["messages"] == MESSAGES
    metrics = httpx.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics").text
    assert metric_value(metrics, "prompt_tokens_total") == 11
    assert metric_value(metrics, "completion_tokens_total") == 5
    assert metric_value(metrics, "tokens_total") == 16
    assert metric_value(metrics, "tokens_by_user_by_model_total", {"user": "alice", "model": "gpt-4o-mini"}) == 16
    assert metric_value(metrics, "llm_gateway_requests_total",
                        {"model": "gpt-4o-mini", "provider": "openai", "status": "200"}) == 1


async def test_chat_completion_async_and_unknown_parameters(gateway: GatewayProcess, upstream: Upstream) -> None:
    aclient = openai.AsyncOpenAI(base_url=gateway.v1, api_key="k", max_retries=0)
    out = await aclient.chat.completions.create(
        model="m", messages=MESSAGES, temperature=0.2,  # type: ignore[arg-type]
        extra_body={"vendor_knob": {"a": 1}, "top_k": 3})
    assert out.choices[0].finish_reason == "stop"
    assert upstream.requests[-1].body["vendor_knob"] == {"a": 1}
    assert upstream.requests[-1].body["top_k"] == 3
    await aclient.close()


def test_streaming_without_usage_request_strips_injected_usage_chunk(gateway: GatewayProcess,
                                                                      upstream: Upstream) -> None:
    chunks = list(client(gateway).chat.completions.create(model="m", messages=MESSAGES,  # type: ignore[arg-type]
                                                          stream=True, extra_headers={"user": "bob"}))
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks), "the usage chunk the client did not ask for must be stripped"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "The quick brown fox jumps"
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert metric_value(metrics, "tokens_by_user_by_model_total", {"user": "bob", "model": "m"}) == 16


def test_streaming_with_usage_requested_keeps_it(gateway: GatewayProcess) -> None:
    chunks = list(client(gateway).chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))  # type: ignore[arg-type]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 16


def test_stream_without_upstream_usage_is_counted_locally(gateway: GatewayProcess) -> None:
    chunks = list(client(gateway).chat.completions.create(model="no-usage", messages=MESSAGES,  # type: ignore[arg-type]
                                                          stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The quick brown fox jumps"
    metrics = httpx.get(f"{gateway.url}/metrics").text
    # cl100k: "You are terse." = 4, "Say hello" = 2, roles 1+1, 3 per message, 3 reply priming -> 17
    assert metric_value(metrics, "prompt_tokens_by_model_total", {"model": "no-usage"}) == 17
    assert metric_value(metrics, "completion_tokens_by_model_total", {"model": "no-usage"}) == 5


def test_completions_embeddings_models(gateway: GatewayProcess) -> None:
    c = client(gateway)
    assert c.completions.create(model="m", prompt="hello").choices[0].text == " world"
    emb = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2 and emb.usage.prompt_tokens == 8
    assert [m.id for m in c.models.list()] == ["upstream-model"]  # single upstream: passed through
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert metric_value(metrics, "prompt_tokens_by_model_total", {"model": "text-embedding-3-small"}) == 8


def test_tools_and_images_pass_through(gateway: GatewayProcess, upstream: Upstream) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    out = client(gateway).chat.completions.create(model="m", messages=messages, tools=tools)  # type: ignore[arg-type]
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "weather" and call.function.arguments == '{"city":"Paris"}'
    assert upstream.requests[-1].body["messages"] == messages


def test_upstream_error_keeps_status_and_body(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        client(gateway).chat.completions.create(model="error-429", messages=MESSAGES)  # type: ignore[arg-type]
    assert exc.value.status_code == 429
    assert exc.value.body["message"] == "simulated 429"  # type: ignore[index]
    assert exc.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError) as exc2:
        client(gateway).chat.completions.create(model="error-text", messages=MESSAGES)  # type: ignore[arg-type]
    assert exc2.value.status_code == 502
    assert "Bad Gateway from the upstream's proxy" in exc2.value.body["message"]  # type: ignore[index]
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert metric_value(metrics, "llm_gateway_requests_total",
                        {"model": "error-429", "provider": "openai", "status": "429"}) == 1


def test_other_v1_paths_pass_through(gateway: GatewayProcess, upstream: Upstream) -> None:
    r = httpx.get(f"{gateway.v1}/files/abc?purpose=x", headers={"authorization": "Bearer k"})
    assert r.status_code == 200 and r.json() == {"echo": "/v1/files/abc", "method": "GET"}
    assert upstream.requests[-1].path == "/v1/files/abc?purpose=x"
