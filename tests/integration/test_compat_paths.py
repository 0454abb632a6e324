"""Other clients' paths on a real gateway process: the `AzureOpenAI` client of the openai SDK, LLMGateway's
`/<model>/v1/...` and `/extras/tokenize/count`, `GET /v1/models/{id}`, and keyless bodies of any content type."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess, launch
from tests.upstream import Upstream

MSG = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[GatewayProcess]:
    gateway = launch([], tmp_path_factory.mktemp("compat"), config={
        "server": {"model_path_routes": True},
        "providers": [{"name": "local", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                       "api_key": "sk-upstream", "models": ["gpt-4o", "text-embedding-3-small", "davinci-002",
                                                            {"name": "my-deployment", "model": "deployed-model"}]}]})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[GatewayProcess]:
    gateway = launch([], tmp_path_factory.mktemp("compat-keyed"), config={
        "auth": {"master_key": "sk-master-compat"},
        "providers": [{"name": "local", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                       "models": ["gpt-4o"]}]})
    yield gateway
    gateway.stop()


def azure(gw: GatewayProcess, key: str = "sk-any") -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=gw.url, api_key=key, api_version="2024-10-21", max_retries=0)


def test_azure_client_chat_plain_and_streamed(gw: GatewayProcess, upstream: Upstream) -> None:
    client = azure(gw)
    before = len(upstream.requests)
    out = client.chat.completions.create(model="my-deployment", messages=MSG)  # type: ignore[arg-type]
    assert out.choices[0].message.content
    sent = upstream.requests[before]
    assert sent.path.startswith("/v1/chat/completions") and sent.body["model"] == "deployed-model"
    assert sent.headers["Authorization"] == "Bearer sk-upstream"  # the provider's key, never the client's
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))  # type: ignore
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and upstream.requests[-1].body["model"] == "gpt-4o"


def test_azure_client_embeddings_and_completions(gw: GatewayProcess) -> None:
    client = azure(gw)
    emb = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2
    done = client.completions.create(model="davinci-002", prompt="Hello")
    assert done.choices[0].text == " world"


def test_azure_v1_path_and_unknown_deployment(gw: GatewayProcess) -> None:
    r = httpx.post(f"{gw.url}/openai/v1/chat/completions", json={"model": "gpt-4o", "messages": MSG})
    assert r.status_code == 200
    r = httpx.post(f"{gw.url}/openai/deployments/nope/chat/completions?api-version=2024-10-21",
                   json={"messages": MSG})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_azure_api_key_header_authenticates(keyed: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError):
        azure(keyed, "sk-wrong").chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    out = azure(keyed, "sk-master-compat").chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore
    assert out.choices[0].message.content


def test_model_path_layout(gw: GatewayProcess, upstream: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/my-deployment/v1", api_key="sk-any", max_retries=0)
    out = client.chat.completions.create(model="ignored-by-the-path", messages=MSG)  # type: ignore[arg-type]
    assert out.choices[0].message.content and upstream.requests[-1].body["model"] == "deployed-model"
    assert httpx.get(f"{gw.url}/api/v1/usage").status_code == 200  # the admin API, not a model called `api`


def test_tokenize_count(gw: GatewayProcess) -> None:
    r = httpx.post(f"{gw.url}/extras/tokenize/count", json={"input": "Hello world"})
    assert r.status_code == 200 and r.json() == {"count": 2}
    # a whole chat request, with the chat framing the limits count (3 per message + 3 to prime the reply)
    r = httpx.post(f"{gw.url}/gpt-4o/extras/tokenize/count", json={"messages": MSG})
    assert r.status_code == 200 and r.json() == {"count": 3 + 2 + 3 + 1}
    r = httpx.post(f"{gw.url}/extras/tokenize/count", json={"nothing": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_model_by_id(gw: GatewayProcess, keyed: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gw.v1, api_key="sk-any", max_retries=0)
    model = client.models.retrieve("my-deployment")
    assert model.id == "my-deployment" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.status_code == 404 and err.value.code == "model_not_found"
    assert httpx.get(f"{keyed.v1}/models/gpt-4o").status_code == 401  # no key, no answer
    r = httpx.get(f"{keyed.v1}/models/gpt-4o", headers={"authorization": "Bearer sk-master-compat"})
    assert r.status_code == 200 and r.json()["id"] == "gpt-4o"


def test_keyless_json_body_of_any_content_type(gw: GatewayProcess, keyed: GatewayProcess) -> None:
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'
    r = httpx.post(f"{gw.v1}/chat/completions", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{keyed.v1}/chat/completions", content=body,
                   headers={"content-type": "text/plain", "authorization": "Bearer sk-master-compat"})
    assert r.status_code == 415


def test_stream_chunks_as_the_upstream_wrote_them(gw: GatewayProcess) -> None:
    body = {"model": "gpt-4o", "messages": MSG, "stream": True}
    with httpx.stream("POST", f"{gw.v1}/chat/completions", json=body) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: {")]
    assert events and not any('"usage"' in e for e in events)  # the gateway asked for usage, not the client
    asked = {**body, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{gw.v1}/chat/completions", json=asked) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: {")]
    assert all('"usage"' in e for e in events) and '"prompt_tokens"' in events[-1]
