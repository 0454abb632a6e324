"""The `vertex` provider through the real gateway: Google credentials (a service-account file, the metadata
server), Gemini and Anthropic models on Vertex AI, embeddings, background token refresh, and a credential that
cannot be obtained (unhealthy, reported, routed around).

Google's side is tests/clouds/google.py on loopback, reached through google-auth's own settings: the
service-account file's `token_uri` and `GCE_METADATA_HOST` / `GCE_METADATA_IP`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from tests.clouds.google import GoogleCloud, make_app
from tests.clouds.thread import AppThread
from tests.conftest import GatewayProcess, launch

LIFETIME = 4  # seconds each Google token lives: refreshes happen while the tests run
TOKEN_DELAY = 0.8  # seconds the token endpoints take: a request that waited for one would show it


@pytest.fixture(scope="module")
def cloud() -> Iterator[GoogleCloud]:
    state = GoogleCloud(token_lifetime=LIFETIME, token_delay=TOKEN_DELAY)
    server = AppThread(make_app(state)).start()
    state.url = server.url
    yield state
    server.stop()


@pytest.fixture(scope="module")
def gateway(cloud: GoogleCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("vertex")
    sa_file = cloud.service_account_file(tmp / "sa.json")
    broken = cloud.service_account_file(tmp / "broken.json", token_path="/refused-token")
    host = cloud.url.removeprefix("http://")
    vertex = {"type": "vertex", "base_url": cloud.url}
    config = {
        "providers": [
            {**vertex, "name": "vertex-sa", "options": {"project": "proj-1", "location": "us-east5",
                                                        "credentials_file": str(sa_file)},
             "models": ["gemini-2.5-flash", "claude-sonnet-4-5@20250929", "gemini-embedding-001",
                        "claude-overloaded", "gemini-exhausted"]},
            {**vertex, "name": "vertex-gce", "options": {"project": "proj-1", "location": "europe-west4"},
             "models": [{"name": "gemini-gce", "model": "gemini-2.5-pro"}]},
            {**vertex, "name": "vertex-federated", "options": {
                "project": "proj-1", "credentials_file": str(cloud.federation_file(tmp / "wif.json", tmp / "oidc"))},
             "models": [{"name": "gemini-federated", "model": "gemini-2.5-flash"}]},
            {**vertex, "name": "vertex-broken", "options": {"project": "proj-1", "credentials_file": str(broken)},
             "models": [{"name": "gemini-broken", "model": "gemini-2.5-pro"}]},
        ],
        "models": {"gemini-with-fallback": {"deployments": [{"provider": "vertex-broken", "model": "gemini-2.5-pro"}],
                                            "fallbacks": ["gemini-sa"]},
                   "gemini-sa": {"deployments": [{"provider": "vertex-sa", "model": "gemini-2.5-flash"}]}},
    }
    # ADC with no GOOGLE_APPLICATION_CREDENTIALS and no gcloud file: the metadata server (as on GKE and GCE)
    env = {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host, "GOOGLE_APPLICATION_CREDENTIALS": "",
           "CLOUDSDK_CONFIG": str(tmp / "gcloud")}
    gw = launch([], tmp, env=env, config=config)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def _last(cloud: GoogleCloud, method: str) -> dict[str, object]:
    return next(c for c in reversed(cloud.vertex_calls) if str(c["path"]).endswith(method))


def test_gemini_with_a_service_account(client: openai.OpenAI, cloud: GoogleCloud) -> None:
    out = client.chat.completions.create(model="gemini-2.5-flash", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == "Hello from Vertex"
    assert out.usage is not None and (out.usage.prompt_tokens, out.usage.completion_tokens) == (7, 4)
    call = _last(cloud, ":generateContent")
    assert call["path"] == ("/v1/projects/proj-1/locations/us-east5/publishers/google/models/"
                            "gemini-2.5-flash:generateContent")
    assert call["source"] == "service-account"  # a token the token endpoint issued for a verified JWT
    assert call["body"] == {"systemInstruction": {"parts": [{"text": "Be brief."}]},
                            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    assert cloud.token_calls and all(c["iss"].startswith("gateway@") for c in cloud.token_calls)


def test_provider_slash_model(client: openai.OpenAI, cloud: GoogleCloud) -> None:
    out = client.chat.completions.create(model="vertex-sa/gemini-2.0-flash-001",
                                         messages=[{"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == "Hello from Vertex"
    assert str(_last(cloud, ":generateContent")["path"]).endswith("/models/gemini-2.0-flash-001:generateContent")


def test_gemini_stream(client: openai.OpenAI, cloud: GoogleCloud) -> None:
    stream = client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "Hi"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Vertex"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 11
    assert _last(cloud, ":streamGenerateContent")["query"] == "alt=sse"


def test_claude_on_vertex(client: openai.OpenAI, cloud: GoogleCloud) -> None:
    out = client.chat.completions.create(model="claude-sonnet-4-5@20250929", max_tokens=100,
                                         messages=[{"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == "Hello from Claude on Vertex"
    assert out.usage is not None and (out.usage.prompt_tokens, out.usage.completion_tokens) == (9, 6)
    call = _last(cloud, ":rawPredict")
    assert call["path"] == ("/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/"
                            "claude-sonnet-4-5@20250929:rawPredict")
    assert call["body"] == {"anthropic_version": "vertex-2023-10-16", "max_tokens": 100,
                            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}

    stream = client.chat.completions.create(model="claude-sonnet-4-5@20250929", stream=True,
                                            messages=[{"role": "user", "content": "Hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from Claude on Vertex"
    assert _last(cloud, ":streamRawPredict")["body"]["stream"] is True  # type: ignore[index]


def test_anthropic_sdk_to_claude_on_vertex(gateway: GatewayProcess, cloud: GoogleCloud) -> None:
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    message = claude.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=64,
                                     messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].type == "text" and message.content[0].text == "Hello from Claude on Vertex"
    assert message.usage.input_tokens == 9 and message.usage.output_tokens == 6
    with claude.messages.stream(model="claude-sonnet-4-5@20250929", max_tokens=64,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        assert "".join(stream.text_stream) == "Hello from Claude on Vertex"


def test_embeddings(client: openai.OpenAI, cloud: GoogleCloud) -> None:
    out = client.embeddings.create(model="gemini-embedding-001", input=["one two", "three"], dimensions=3,
                                   encoding_format="float")
    assert [d.embedding for d in out.data] == [[0.25, -0.5, 7.0], [0.25, -0.5, 5.0]]
    assert out.usage.prompt_tokens == 3
    assert _last(cloud, ":predict")["body"] == {"instances": [{"content": "one two"}, {"content": "three"}],
                                                "parameters": {"outputDimensionality": 3}}


def test_errors_in_either_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="claude-overloaded", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 503 and "Overloaded" in err.value.message
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gemini-exhausted", messages=[{"role": "user", "content": "Hi"}])
    assert "Quota exceeded" in limited.value.message


def test_metadata_server_credentials(client: openai.OpenAI, cloud: GoogleCloud) -> None:
    out = client.chat.completions.create(model="gemini-gce", messages=[{"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == "Hello from Vertex"
    call = _last(cloud, ":generateContent")
    assert call["source"] == "metadata"
    assert str(call["path"]).startswith("/v1/projects/proj-1/locations/europe-west4/publishers/google/models/"
                                        "gemini-2.5-pro")
    assert any("/service-accounts/default/token" in c for c in cloud.metadata_calls)


def test_workload_identity_federation(client: openai.OpenAI, cloud: GoogleCloud) -> None:
    """An `external_account` file (e.g. an EKS or AKS pod's OIDC token): exchanged at Google's STS."""
    out = client.chat.completions.create(model="gemini-federated", messages=[{"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == "Hello from Vertex"
    assert _last(cloud, ":generateContent")["source"] == "federation"
    assert cloud.exchange_calls[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"


def test_tokens_are_refreshed_before_expiry_without_a_request_waiting(client: openai.OpenAI,
                                                                       cloud: GoogleCloud) -> None:
    first_call = len(cloud.vertex_calls)
    fetched = len(cloud.token_calls)
    slowest = 0.0
    deadline = time.monotonic() + 2 * LIFETIME
    while time.monotonic() < deadline:
        started = time.monotonic()
        out = client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
        slowest = max(slowest, time.monotonic() - started)
        assert out.choices[0].message.content == "Hello from Vertex"  # never a 401 from an expired token
        time.sleep(0.05)
    calls = [c for c in cloud.vertex_calls[first_call:] if c["source"] == "service-account"]
    assert len({c["token"] for c in calls}) >= 3  # at least two refreshes while requests kept coming
    assert len(cloud.token_calls) - fetched >= 2
    assert slowest < TOKEN_DELAY  # no request waited for the token endpoint


def test_credentials_that_cannot_be_obtained(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 503
    report = ready.json()["providers"]
    assert report["vertex-sa"] == report["vertex-gce"] == report["vertex-federated"] == "reachable"
    assert report["vertex-broken"].startswith("credentials unavailable: Google application default credentials: "
                                              "RefreshError")
    status = httpx.get(f"{gateway.url}/api/v1/providers/status").json()
    broken = next(d for d in status["deployments"] if d["provider"] == "vertex-broken")
    assert broken["healthy"] is False and "RefreshError" in broken["credentials"]
    healthy = next(d for d in status["deployments"] if d["provider"] == "vertex-sa")
    assert healthy["healthy"] is True and healthy["credentials"] == "ok"

    out = client.chat.completions.with_raw_response.create(model="gemini-with-fallback",
                                                           messages=[{"role": "user", "content": "Hi"}])
    assert out.headers["x-gateway-provider"] == "vertex-sa"  # routed to the fallback
    assert out.parse().choices[0].message.content == "Hello from Vertex"
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="gemini-broken", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 502
    assert err.value.body["code"] == "credentials_unavailable"  # type: ignore[index]
    assert "127.0.0.1" not in str(err.value.body)

    log = gateway.log()
    assert "vertex-broken: cannot obtain Google application default credentials (RefreshError" in log
    assert "ya29." not in log and "PRIVATE KEY" not in log
