"""A LiteLLM proxy's model-config.yaml (tests/fixtures/litellm-model-config.yaml): imported with
`llm-gateway config import litellm`, and given to `--config` as it is; the real gateway then serves its
model names with its master key, its fallbacks, its Redis cache and its rpm limits, and resolves
`os.environ/VAR` (never sending it literally)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from tests.conftest import GatewayProcess, launch
from tests.upstream import Upstream

from llm_gateway.cli import main
from llm_gateway.settings import load_config_file

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "litellm-model-config.yaml"
MASTER = "sk-litellm-master-configs"


def env(tmp: Path) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-openai-from-env", "AZURE_API_BASE": "https://example.openai.azure.com",
            "AZURE_API_KEY": "az", "ANTHROPIC_API_KEY": "ant", "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s",
            "GEMINI_API_KEY": "g", "REDIS_HOST": "127.0.0.1", "LITELLM_MASTER_KEY": MASTER,
            "DATABASE_URL": f"sqlite:///{tmp}/litellm.db"}


def litellm_file(tmp: Path, upstream: Upstream) -> Path:
    """The fixture pointed at the test upstream; gpt-4o's deployment answers 503 (its fallback is local-vllm)."""
    text = (FIXTURE.read_text().replace("https://api.openai.com/v1", f"{upstream.url}/v1")
            .replace("http://localhost:8000/v1", f"{upstream.url}/v1")
            .replace("model: openai/gpt-4o\n", "model: openai/error-503\n")
            .replace("litellm.caching", f"configs-test-{uuid.uuid4().hex[:8]}"))
    path = tmp / "model-config.yaml"
    path.write_text(text)
    return path


def run_import(source: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_gateway", "config", "import", "litellm", str(source), *extra],
                          capture_output=True, text=True, env=dict(os.environ))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("litellm")
    out = tmp / "gateway.yaml"
    done = run_import(litellm_file(tmp, upstream), "-o", str(out))
    assert done.returncode == 0, done.stderr
    gateway = launch(["--config", str(out)], tmp, env=env(tmp))
    yield gateway
    gateway.stop()


def client(gw: GatewayProcess, key: str = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0)


def test_import_writes_our_config_and_says_what_it_left(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "import", "litellm", str(FIXTURE)]) == 0
    done = capsys.readouterr()
    config = yaml.safe_load(done.out)
    assert config["auth"] == {"master_key": "${LITELLM_MASTER_KEY}"}
    assert config["database"] == {"url": "${DATABASE_URL}"}
    providers = {p["name"]: p for p in config["providers"]}
    assert providers["azure"]["options"] == {"api_version": "2024-06-01"}
    assert providers["bedrock"]["options"]["region"] == "us-east-1"
    assert providers["ollama"]["base_url"] == "http://localhost:11434/v1"
    assert {p["type"] for p in providers.values()} >= {"azure", "anthropic", "bedrock", "gemini", "ollama"}
    assert config["models"]["gpt-4o"]["fallbacks"] == ["local-vllm"]
    assert config["models"]["gpt-4o"]["strategy"] == "least-in-flight"  # least-busy
    assert config["routing"] == {"retries": {"max_retries": 2}, "cooldown": {"failures": 3, "cooldown_s": 30}}
    assert config["cache"]["backend"] == "redis" and config["cache"]["ttl_s"] == 600
    assert "os.environ" not in done.out
    assert "general_settings.alerting" in done.err  # what did not carry over, and why


def test_master_key_aliases_and_env_keys(gw: GatewayProcess, upstream: Upstream) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(gw, "sk-wrong").chat.completions.create(model="local-vllm", messages=[{"role": "user", "content": "x"}])
    out = client(gw).chat.completions.create(model="local-vllm", messages=[{"role": "user", "content": "x"}])
    assert out.choices[0].message.content
    assert upstream.requests[-1].body["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    client(gw).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "env"}])
    assert upstream.requests[-1].headers["Authorization"] == "Bearer sk-openai-from-env"  # never os.environ/...


def test_bare_base_url_as_litellm_serves_it(gw: GatewayProcess) -> None:
    bare = openai.OpenAI(base_url=gw.url, api_key=MASTER, max_retries=0)  # LiteLLM's clients may omit /v1
    out = bare.chat.completions.create(model="local-vllm", messages=[{"role": "user", "content": "bare"}])
    assert out.choices[0].message.content
    assert "local-vllm" in [m.id for m in bare.models.list()]


def test_fallbacks(gw: GatewayProcess, upstream: Upstream) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "fall back"}])
    assert raw.headers["x-gateway-deployment"] == "openai-2/meta-llama/Llama-3.1-8B-Instruct"
    assert int(raw.headers["x-gateway-attempts"]) == 4  # 1 + num_retries 2 on gpt-4o, then its fallback


def test_redis_cache(gw: GatewayProcess) -> None:
    body = {"model": "local-vllm", "messages": [{"role": "user", "content": "cache me, LiteLLM"}]}
    auth = {"authorization": f"Bearer {MASTER}"}
    first = httpx.post(f"{gw.v1}/chat/completions", json=body, headers=auth)
    second = httpx.post(f"{gw.v1}/chat/completions", json=body, headers=auth)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")


def test_rpm_limit(gw: GatewayProcess) -> None:
    auth = {"authorization": f"Bearer {MASTER}"}
    statuses = [httpx.post(f"{gw.v1}/chat/completions", headers=auth, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"rpm {i}"}]}).status_code for i in range(4)]
    assert statuses[-1] == 429 and statuses.count(200) == 2  # rpm: 3, one used by the env-key test


def test_litellm_file_given_directly_is_the_imported_one(tmp_path: Path, upstream: Upstream) -> None:
    source = litellm_file(tmp_path, upstream)
    out = tmp_path / "gateway.yaml"
    assert main(["config", "import", "litellm", str(source), "-o", str(out)]) == 0
    assert load_config_file(source, env(tmp_path)) == load_config_file(out, env(tmp_path))


def test_our_config_refuses_os_environ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ours.yaml"
    path.write_text("providers:\n  - {name: openai, type: openai, api_key: os.environ/OPENAI_API_KEY}\n")
    assert main(["config", "check", str(path)]) == 1
    assert "providers[0].api_key: 'os.environ/OPENAI_API_KEY' is LiteLLM's way to name a variable: write " \
           "${OPENAI_API_KEY} instead" in capsys.readouterr().err
