"""The Go llm-gateway seed's README config, as its users have it (tests/fixtures/go-seed-readme.yaml), starting a
real gateway process in front of the test upstream: aliases, retries and the fallback chain, the cache, rate
limits, CORS; and `config check` naming what to write instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.conftest import GatewayProcess, free_port, launch
from tests.upstream import Upstream

from llm_gateway.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "go-seed-readme.yaml"
MSG = [{"role": "user", "content": "Hello"}]


def seed_config(tmp: Path, upstream: Upstream) -> Path:
    """The README file with its public URLs pointed at the test upstream (and Anthropic's at a closed port)."""
    text = FIXTURE.read_text()
    text = text.replace("https://api.openai.com/v1", f"{upstream.url}/v1")
    text = text.replace("https://api.anthropic.com", f"http://127.0.0.1:{free_port()}")
    text = text.replace("http://localhost:11434/v1", f"{upstream.url}/v1")
    path = tmp / "config.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("go-seed")
    gateway = launch(["--config", str(seed_config(tmp, upstream))], tmp,
                     env={"OPENAI_API_KEY": "sk-openai-seed", "ANTHROPIC_API_KEY": "sk-ant-seed"})
    yield gateway
    gateway.stop()


def client(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="sk-client", max_retries=0)


def test_model_mapping_alias(gw: GatewayProcess, upstream: Upstream) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(model="gpt-4", messages=MSG)  # type: ignore
    assert raw.headers["x-gateway-provider"] == "openai"
    assert upstream.requests[-1].body["model"] == "gpt-4o"  # modelMappings: {gpt-4: {provider, model}}
    assert upstream.requests[-1].headers["Authorization"] == "Bearer sk-openai-seed"  # apiKey
    raw = client(gw).chat.completions.with_raw_response.create(model="local", messages=MSG)  # type: ignore
    assert raw.headers["x-gateway-provider"] == "ollama"  # `local: ollama/llama3`; type inferred from the name
    assert upstream.requests[-1].body["model"] == "llama3"


def test_retries_then_fallback_chain(gw: GatewayProcess) -> None:
    # openai fails 3 times (1 + maxRetries 2), anthropic is down (3 tries: the route's retries apply to each
    # group of the chain), ollama (next in fallbackChain) answers at the upstream's 4th sight of the model
    raw = client(gw).chat.completions.with_raw_response.create(model="flaky-3-go", messages=MSG)  # type: ignore
    assert raw.headers["x-gateway-provider"] == "ollama"
    assert raw.headers["x-gateway-attempts"] == "7"


def test_cache_hit(gw: GatewayProcess, upstream: Upstream) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "cache me, Go seed"}]}
    first = httpx.post(f"{gw.v1}/chat/completions", json=body)
    before = len(upstream.requests)
    second = httpx.post(f"{gw.v1}/chat/completions", json=body)
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert second.json() == first.json() and len(upstream.requests) == before


def test_per_model_rate_limit(gw: GatewayProcess) -> None:
    statuses = [httpx.post(f"{gw.v1}/chat/completions", json={"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": f"limit {i}"}]}).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]  # perModel gpt-4o-mini: requestsPerMinute: 3


def test_cors(gw: GatewayProcess) -> None:
    r = httpx.options(f"{gw.v1}/chat/completions", headers={
        "origin": "https://app.example.com", "access-control-request-method": "POST"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"
    r = httpx.options(f"{gw.v1}/chat/completions", headers={
        "origin": "https://evil.example.com", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_config_check_says_what_to_write(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "y")
    bad = tmp_path / "bad.yaml"
    bad.write_text(FIXTURE.read_text().replace("maxRetries: 2", "maxRetry: 2").replace("ttl: 1h", "tll: 1h")
                   .replace("readTimeout: 30s", "readTimeout: soon")
                   + "providers2: []\n")
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "providers[0].maxRetry: unknown option; did you mean 'max_retries'?" in err
    assert "cache.tll: unknown option; did you mean 'ttl_s'?" in err
    assert "providers2: unknown option; did you mean 'providers'?" in err
    assert "server.limits.body_timeout_s" in err  # `soon` is not a duration
    assert main(["config", "check", str(FIXTURE)]) == 0, capsys.readouterr().err
