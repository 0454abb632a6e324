"""Measure server / HTTP client / JSON library alternatives for the gateway's core (issue 9).

One command: starts bench/mock_upstream.py on CPU 0, then for each variant in bench/alternatives/ a minimal
pass-through proxy on CPU 1 driven by `wrk -t1 -c50` on CPU 0, and reports RPS and the proxy's CPU ms per
request (utime+stime of its process tree over the measured run). Also a JSON loads+dumps micro-benchmark.

    .venv/bin/python bench/alternatives.py [--duration 8] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

import msgspec
import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VARIANTS_DIR = BENCH / "alternatives"
PY = str(ROOT / ".venv" / "bin" / "python")
sys.path.insert(0, str(BENCH))
from run import CHAT, cpu_seconds, free_port  # noqa: E402

# name -> (label, command builder)
VARIANTS: dict[str, str] = {
    "aiohttp_aiohttp": "(a) aiohttp server + aiohttp client",
    "uvicorn_httpx": "(b) uvicorn httptools/uvloop ASGI + httpx",
    "uvicorn_aiohttp": "(c) uvicorn httptools/uvloop ASGI + aiohttp client",
    "uvicorn_ours": "(d) uvicorn httptools/uvloop ASGI + our HttpClient",
    "granian_ours": "(e) granian RSGI (uvloop) + our HttpClient",
    "granian_asgi": "(h) granian ASGI (uvloop) + our HttpClient",
    "ours_httpx": "(f) our server + httpx",
    "ours_ours": "(g) our server + our HttpClient (gateway core)",
}

RESPONSE_700 = {
    "id": "chatcmpl-8xYzAbCdEfGhIjKlMnOpQrStUv", "object": "chat.completion", "created": 1732350000,
    "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": (
        "Gateways sit between applications and model providers, authenticating each request, enforcing "
        "limits and budgets, routing to the cheapest healthy deployment, caching repeated prompts and "
        "recording every token and cent."), "refusal": None},
        "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 25, "completion_tokens": 64, "total_tokens": 89,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0,
                                            "accepted_prediction_tokens": 0}},
}


def json_bench() -> list[dict[str, object]]:
    """µs per loads+dumps of the chat request and a ~700-byte chat.completion, per library (on CPU 1)."""
    os.sched_setaffinity(0, {1})
    dec, enc = msgspec.json.Decoder(), msgspec.json.Encoder()
    libs = {
        "json (stdlib)": (json.loads, lambda o: json.dumps(o).encode()),
        "orjson": (orjson.loads, orjson.dumps),
        "msgspec.json": (dec.decode, enc.encode),
    }
    rows = []
    for payload_name, obj in (("chat request", CHAT), ("chat.completion response", RESPONSE_700)):
        raw = orjson.dumps(obj)
        for lib, (loads, dumps) in libs.items():
            assert loads(dumps(loads(raw))) == obj

            def stmt(loads=loads, dumps=dumps, raw=raw) -> object:  # bound now: no late binding
                return dumps(loads(raw))

            n = 20000
            best = min(timeit.repeat(stmt, number=n, repeat=5)) / n
            rows.append({"payload": payload_name, "bytes": len(raw), "library": lib, "us_per_op": best * 1e6})
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return rows


def wait_ready(url: str, body: bytes | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def proxy_command(name: str, port: int) -> list[str]:
    if name in ("granian_ours", "granian_asgi"):
        interface = "rsgi" if name == "granian_ours" else "asgi"
        return [str(ROOT / ".venv" / "bin" / "granian"), "--interface", interface, "--loop", "uvloop",
                "--workers", "1", "--http", "1", "--no-ws", "--log-level", "warning", "--host", "127.0.0.1",
                "--port", str(port), "--working-dir", str(VARIANTS_DIR), f"{name}:app"]
    return [PY, str(VARIANTS_DIR / f"{name}.py")]


def wrk(url: str, body_file: str, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", "-c50", f"-d{seconds:g}s", "-s", str(BENCH / "post.lua"), url],
        env={**os.environ, "BODY_FILE": body_file, "HEADERS": ""}, capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT_JSON "):
            return json.loads(line[len("RESULT_JSON "):])
    raise RuntimeError(f"wrk printed no RESULT_JSON:\n{out.stdout}\n{out.stderr}")


def run_variant(name: str, upstream_port: int, body_file: str, duration: float) -> dict[str, object]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "UPSTREAM_PORT": str(upstream_port),
           "PYTHONPATH": f"{VARIANTS_DIR}{os.pathsep}{ROOT / 'src'}"}
    proc = subprocess.Popen(["taskset", "-c", "1", *proxy_command(name, port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        wait_ready(url, json.dumps(CHAT).encode())
        wrk(url, body_file, 2)  # warm-up: pools filled, caches hot
        load_before = os.getloadavg()[0]
        cpu0 = cpu_seconds(proc.pid)
        res = wrk(url, body_file, duration)
        cpu = cpu_seconds(proc.pid) - cpu0
        return {"variant": name, "label": VARIANTS[name], "rps": res["rps"], "requests": res["requests"],
                "cpu_ms_per_req": cpu * 1000 / max(1, res["requests"]), "cpu_util": cpu / duration,
                "p50_ms": res["lat_p50_ms"], "p99_ms": res["lat_p99_ms"],
                "errors": res["sock_errors"] + res["non2xx"], "load1": load_before}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2, help="passes over all variants (interleaved)")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="run only these variants")
    parser.add_argument("--json", help="also write all results to this file")
    args = parser.parse_args()

    started = time.time()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    json_rows = json_bench()
    print("\n| payload | bytes | library | µs per loads+dumps |\n|---|---:|---|---:|")
    for r in json_rows:
        print(f"| {r['payload']} | {r['bytes']} | {r['library']} | {r['us_per_op']:.2f} |", flush=True)

    upstream_port = free_port()
    mock = subprocess.Popen(["taskset", "-c", "0", PY, str(BENCH / "mock_upstream.py"), "--port",
                             str(upstream_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: list[dict[str, object]] = []
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(json.dumps(CHAT).encode())
        body_file = f.name
    try:
        wait_ready(f"http://127.0.0.1:{upstream_port}/health", None)
        for rnd in range(args.rounds):
            for name in args.only or VARIANTS:
                r = run_variant(name, upstream_port, body_file, args.duration)
                r["round"] = rnd + 1
                runs.append(r)
                print(f"round {rnd + 1} {name:16s} rps={r['rps']:8.0f} cpu_ms/req={r['cpu_ms_per_req']:.3f} "
                      f"cpu_util={r['cpu_util']:.2f} p99={r['p99_ms']:.2f}ms errors={r['errors']} "
                      f"load1={r['load1']:.2f}", flush=True)
    finally:
        mock.terminate()
        mock.wait(10)
        os.unlink(body_file)

    # Interference from other processes only ever adds CPU time, so the best round is the truest one.
    print("\n| variant | RPS (best) | CPU ms/req (best) | proxy CPU use | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.only or VARIANTS:
        mine = [r for r in runs if r["variant"] == name]
        best = min(mine, key=lambda r: float(r["cpu_ms_per_req"]))  # type: ignore[arg-type]
        print(f"| {VARIANTS[name]} | {max(float(r['rps']) for r in mine):.0f} | "  # type: ignore[arg-type]
              f"{best['cpu_ms_per_req']:.3f} | {best['cpu_util']:.0%} | {best['p50_ms']:.2f} | "
              f"{best['p99_ms']:.2f} | {sum(int(r['errors']) for r in mine)} |")  # type: ignore[call-overload]
    print(f"\nload average at end: {os.getloadavg()}; total {time.time() - started:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"json": json_rows, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
