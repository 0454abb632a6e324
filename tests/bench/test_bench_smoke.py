"""The benchmark runs end to end (a short smoke run): it checks the harness works, not its numbers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is installed by scripts/test.sh")
def test_bench_smoke_full_pipeline() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--pipeline", "full", "--smoke"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "| llm-gateway (full) |" in out.stdout and "| direct |" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("| llm-gateway (full) |"))
    assert "20/20" in row and "50/50" in row  # every stream ended with [DONE]; the concurrent slow streams held
    assert "added stream TTFB p50 against its own upstream called directly" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.startswith("| target |"))
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" paced streams [DONE] "].strip() == "20/20"  # the paced streams, through the gateway
    assert "| relay (floor) |" in out.stdout and "(full): over the relay: p50 @1 conn" in out.stdout
    assert "(full): added: p50 @1 conn" in out.stdout and "paced stream TTFB p50" in out.stdout
