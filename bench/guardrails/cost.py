"""What guardrails cost per request: CPU of the gateway process and latency, against the bench mock upstream.

Configurations: no guardrail; `pii` + `secrets` (pre_call, reversible); `prompt_injection` (pre_call); and
`pii` + `secrets` also on the answer (post_call), where streams keep their look-behind window: the time to the
first content byte of a stream is measured for each, on the mock's `paced` model (20 words 1 ms apart, as a
model's tokens come). Requests are sent one at a time over one keep-alive connection
(latency without queueing); CPU is the gateway process's user+system time over the measured requests.

Run: PYTHONPATH=src python bench/guardrails/cost.py [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

HERE = Path(__file__).resolve().parent
PROMPT = ("Please summarise the following support ticket in two sentences. The customer, reachable at "
          "jane.roe@example.com, says the invoice for March was charged twice to the card ending in 1111 and "
          "asks for a refund to the original payment method before the end of the week. " * 2)
GUARDS = {
    "pii": {"name": "pii", "type": "pii", "action": "reversible"},
    "secrets": {"name": "secrets", "type": "secrets", "action": "reversible"},
    "pii-out": {"name": "pii-out", "type": "pii", "action": "mask", "mode": ["post_call"]},
    "injection": {"name": "injection", "type": "prompt_injection", "action": "block", "threshold": 0.9},
}
CONFIGS = {"none": [], "pii+secrets": ["pii", "secrets"], "prompt_injection": ["injection"],
           "pii+secrets+post_call pii": ["pii", "secrets", "pii-out"]}


def free_port() -> int:
    import socket  # noqa: PLC0415
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


def run(name: str, guards: list[str], upstream: str, n: int, tmp: Path) -> dict[str, Any]:
    port = free_port()
    config = {"providers": [{"name": "mock", "type": "openai-compatible", "base_url": upstream, "models": ["*"]}]}
    if guards:
        config["guardrails"] = [GUARDS[g] for g in guards]
        config["guardrail_policy"] = {"default": guards}
    path = tmp / f"{name.replace('+', '_').replace(' ', '_')}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "llm_gateway", "--port", str(port), "--host", "127.0.0.1",
                             "--http-proxy-metrics-port", str(free_port()), "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        wait(f"http://127.0.0.1:{port}/health")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
        with httpx.Client(timeout=30) as client:
            for _ in range(30):
                client.post(url, json=body).raise_for_status()
            cpu = psutil.Process(proc.pid)
            before = sum(cpu.cpu_times()[:2])
            lat = []
            for _ in range(n):
                t = time.perf_counter()
                client.post(url, json=body).raise_for_status()
                lat.append(time.perf_counter() - t)
            cpu_ms = (sum(cpu.cpu_times()[:2]) - before) * 1000 / n
            ttfb = []
            for _ in range(max(n // 3, 20)):
                t = time.perf_counter()
                with client.stream("POST", url, json={**body, "model": "paced", "stream": True}) as resp:
                    first = None
                    for chunk in resp.iter_bytes():
                        if first is None and b'"content":"' in chunk.replace(b'"content":""', b""):
                            first = time.perf_counter() - t
                    if first is not None:
                        ttfb.append(first)
        return {"cpu_ms": cpu_ms, "p50_ms": statistics.median(lat) * 1000,
                "ttfb_ms": statistics.median(ttfb) * 1000 if ttfb else float("nan")}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    mock_port = free_port()
    mock = subprocess.Popen([sys.executable, str(HERE.parent / "mock_upstream.py"), "--port", str(mock_port)],
                            env={**os.environ, "MOCK_CHUNKS": "20"})
    try:
        wait(f"http://127.0.0.1:{mock_port}/health")
        with tempfile.TemporaryDirectory() as tmp:
            rows = {name: run(name, guards, f"http://127.0.0.1:{mock_port}/v1", args.requests, Path(tmp))
                    for name, guards in CONFIGS.items()}
    finally:
        mock.terminate()
        mock.wait(10)
    base = rows["none"]
    print(f"{args.requests} requests each, one at a time; prompt {len(PROMPT)} characters")
    print("| guardrails | CPU ms / request | added | p50 latency ms | stream: first content byte ms |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['cpu_ms']:.2f} | {r['cpu_ms'] - base['cpu_ms']:+.2f} | {r['p50_ms']:.2f} | "
              f"{r['ttfb_ms']:.2f} |")


if __name__ == "__main__":
    main()
