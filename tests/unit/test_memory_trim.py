"""Memory: one malloc arena for all threads unless the operator chose otherwise; start-up frozen out of the GC."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.upstream import free_port

SCRIPT = "from llm_gateway.server.trim import one_malloc_arena; print(one_malloc_arena())"


def run(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_threads_share_one_arena_unless_the_environment_says_otherwise() -> None:
    assert run({}) == "True"
    assert run({"MALLOC_ARENA_MAX": "4"}) == "False"  # the operator's setting stands


SERVE = """
import asyncio, gc, sys
from llm_gateway.runner import serve_gateway
from llm_gateway.settings import parse_config

async def main() -> None:
    port = int(sys.argv[1])
    config = parse_config({"server": {"host": "127.0.0.1", "port": port, "metrics_port": 0},
                           "database": {"url": "sqlite:///" + sys.argv[2]},
                           "providers": [{"name": "up", "type": "openai-compatible",
                                          "base_url": "http://127.0.0.1:9/v1", "models": ["*"]}]}, env={})
    before = gc.get_freeze_count()
    stop = asyncio.Event()
    served = asyncio.create_task(serve_gateway(config, stop))
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        break
    print(before, gc.get_freeze_count())
    stop.set()
    await served

asyncio.run(main())
"""


def test_the_gateway_freezes_what_start_up_built_before_it_serves(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SERVE, str(free_port()), str(tmp_path / "g.db")],
                         capture_output=True, text=True, check=True, timeout=120)
    before, after = map(int, out.stdout.split())
    assert before == 0 and after > 10_000  # modules, settings models, tokenizer tables: tens of thousands


def _threads(pid: int) -> list[str]:
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            continue
    return names


def _gateway_threads(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """The thread names of a real `llm-gateway` process once it answers."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    proc = subprocess.Popen([sys.executable, "-m", "llm_gateway", "--host", "127.0.0.1", "--port", str(port),
                             "--http-proxy-metrics-port", "0", "--openai-domain", "127.0.0.1"],
                            env={**clean, "LLM_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        return _threads(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads thread names from /proc")
def test_granian_returns_freed_memory_from_a_background_thread_unless_the_operator_says_otherwise(
        tmp_path: Path) -> None:
    # jemalloc names the thread that purges unused pages; without it an idle gateway keeps a burst's memory
    assert _gateway_threads(tmp_path, {}).count("jemalloc_bg_thd") == 1
    assert "jemalloc_bg_thd" not in _gateway_threads(tmp_path, {"_RJEM_MALLOC_CONF": "background_thread:false"})
