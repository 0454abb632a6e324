"""Memory given back after bursts: one malloc arena for all threads, unless the operator chose otherwise."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

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
