"""The Dockerfile: hadolint passes, and its `uv sync` steps, run here as written (no extras), give an install that
starts and serves on SQLite and memory, without numpy or psycopg. Docker itself cannot run on this machine."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from tests.conftest import GatewayProcess, upstream_args, wait_until_answering
from tests.upstream import Upstream, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def dockerfile_steps() -> tuple[dict[str, str], list[list[str]]]:
    """The build stage's ENV and its `uv sync` RUN commands (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    runs: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("FROM") and runs:
            break  # the build stage ends
        if line.startswith("ENV "):
            env.update(part.split("=", 1) for part in shlex.split(line[4:]))  # type: ignore[misc]
        elif line.startswith("RUN ") and "uv sync" in line:
            runs.append(shlex.split(line[4:]))
    return env, runs


def test_hadolint_passes() -> None:
    result = subprocess.run([str(BIN / "hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_steps_install_a_plain_gateway_that_serves(tmp_path: Path, upstream: Upstream) -> None:
    env, runs = dockerfile_steps()
    assert len(runs) == 2 and all(r[:4] == ["uv", "sync", "--locked", "--no-dev"] for r in runs)
    assert "--no-install-project" in runs[0] and "--no-editable" in runs[1]
    build = tmp_path / "src"
    build.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, build / name)
    shutil.copytree(ROOT / "src", build / "src", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "opt"
    step_env = {**os.environ, **env, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": sys.executable,
                "UV_LINK_MODE": "hardlink", "UV_COMPILE_BYTECODE": "0"}  # the image compiles; not needed here
    step_env.pop("PYTHONPATH", None)
    step_env.pop("VIRTUAL_ENV", None)
    for run in runs:
        cmd = [str(BIN / "uv"), *(arg for arg in run[1:] if arg != "$EXTRAS")]  # EXTRAS="": a plain install
        result = subprocess.run(cmd, cwd=build, env=step_env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    site = next(venv.glob("lib/python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert "numpy" not in installed and "psycopg" not in installed and "onnxruntime" not in installed
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    assert size < 120 * 2**20, f"a plain install takes {size / 2**20:.0f} MiB"

    # Started as the image starts it: the console script, in an empty working directory, no config.
    work = tmp_path / "data"
    work.mkdir()
    port = free_port()
    log = tmp_path / "gateway.log"
    run_env = {k: v for k, v in step_env.items() if not k.startswith("UV_")}
    proc = subprocess.Popen([str(venv / "bin" / "llm-gateway"), "--host", "127.0.0.1", "--port", str(port),
                             "--http-proxy-metrics-port", "0", *upstream_args(upstream)],
                            cwd=work, env=run_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    gw = GatewayProcess(proc, port, 0, log)
    try:
        wait_until_answering(proc, f"{gw.url}/health", log, 60, "gateway")
        r = httpx.post(f"{gw.v1}/chat/completions", json={"model": "m", "messages": [{"role": "user",
                                                                                       "content": "hi"}]})
        assert r.status_code == 200 and r.json()["usage"]["total_tokens"] > 0
    finally:
        assert gw.stop() == 0
    assert (work / "llm-gateway.db").exists()  # the ledger, on SQLite in the working directory (the volume)
