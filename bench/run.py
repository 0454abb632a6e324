"""The gateway benchmark: one command, one table, the gateway next to a direct call to the same mock upstream
and next to `bench/relay.py`, a TCP relay that does nothing but pass bytes: the floor of any proxy on this layout.

    .venv/bin/python bench/run.py                     # full pipeline, memory limits
    .venv/bin/python bench/run.py --pipeline bare     # the proxy alone
    .venv/bin/python bench/run.py --smoke             # a few seconds: checks that it works, not the numbers

Layout on this 2-core machine: load generator and mock upstream on CPU 0, the gateway alone on CPU 1.
CPU per request is the gateway process tree's utime+stime over the requests it served.
Streams (20 chunks) are measured twice: written by the mock in one burst, and paced 1 ms apart (model "paced"),
as a model's tokens come; a burst holds the load generator's core, which the mock shares, until it is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TICK = os.sysconf("SC_CLK_TCK")
MASTER_KEY = "sk-bench-master"
CHAT = {"model": "mock", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                      {"role": "user", "content": "Write one sentence about gateways."}],
        "max_tokens": 64, "temperature": 0.7}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            out.extend(tree(int(kid)))
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mib(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def wait_http(url: str, timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with socket.create_connection(url.split("//")[1].split("/")[0].split(":"), timeout=0.5) as s:  # type: ignore[arg-type]
                path = "/" + url.split("//")[1].split("/", 1)[1]
                s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer")


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def start(cmd: list[str], port: int, cpu: str, env: dict[str, str] | None = None, log: Path | None = None) -> Proc:
    pinned = ["taskset", "-c", cpu, *cmd] if shutil.which("taskset") else cmd
    out = log.open("wb") if log else subprocess.DEVNULL
    popen = subprocess.Popen(pinned, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    return Proc(popen, port)


def run_wrk(url: str, conns: int, seconds: float, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    env = {**os.environ, "BODY_FILE": f.name,
           "HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, int(seconds))}s", "--timeout", "30s",
           "-s", str(HERE / "post.lua"), url]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT_JSON "))
    os.unlink(f.name)
    return json.loads(line[len("RESULT_JSON "):])  # type: ignore[no-any-return]


async def streams(url: str, n: int, concurrency: int, headers: dict[str, str], model: str) -> dict[str, Any]:
    """Streaming requests: time to the first body byte and to the end; counts complete streams."""
    body = {**CHAT, "model": model, "stream": True}
    ttfb: list[float] = []
    total: list[float] = []
    complete = 0
    errors = 0
    sem = asyncio.Semaphore(concurrency)
    conn = aiohttp.TCPConnector(limit=concurrency + 10)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one() -> None:
            nonlocal complete, errors
            async with sem:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, json=body, headers=headers) as r:
                        first = True
                        data = b""
                        async for chunk in r.content.iter_any():
                            if first:
                                ttfb.append(time.perf_counter() - t0)
                                first = False
                            data += chunk
                        total.append(time.perf_counter() - t0)
                        complete += r.status == 200 and data.endswith(b"data: [DONE]\n\n")
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return {"ttfb_p50_ms": pct(ttfb, 50), "ttfb_p99_ms": pct(ttfb, 99), "total_p50_ms": pct(total, 50),
            "complete": complete, "errors": errors, "n": n}


async def paired_ttfb(gateway: str, upstream: str, headers: dict[str, str], n: int, rounds: int = 3) -> list[float]:
    """Stream TTFB p50 (ms) of the gateway and of its own upstream called directly, in alternating rounds.

    The client runs on CPU 0 like the upstream mock, as in the shared harness: there a client waits for the mock
    to finish writing its stream, through the gateway or not; the difference is what the gateway adds.
    """
    gw: list[float] = []
    up: list[float] = []
    before = os.sched_getaffinity(0)
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {0})  # this client on the load generator's core, as the shared harness runs it
    try:
        for _ in range(rounds):
            for url, hdrs, out in ((gateway, headers, gw), (upstream, {}, up)):
                s = await streams(f"{url}/v1/chat/completions", max(1, n // rounds), 1, hdrs, "mock")
                out.append(s["ttfb_p50_ms"])
    finally:
        os.sched_setaffinity(0, before)
    return [statistics.median(gw), statistics.median(up)]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def gateway_config(pipeline: str, fast: int, slow: int, workdir: Path,
                   redis_lease: int | None = None) -> dict[str, Any]:
    providers = [
        {"name": "mock", "type": "openai-compatible", "base_url": f"http://127.0.0.1:{fast}/v1", "api_key": "sk-up",
         "models": ["mock", "paced"]},
        {"name": "slowmock", "type": "openai-compatible", "base_url": f"http://127.0.0.1:{slow}/v1",
         "api_key": "sk-up", "models": ["slow"]},
    ]
    config: dict[str, Any] = {"providers": providers, "server": {"metrics_port": 0}}
    if pipeline == "bare":
        return config
    config["auth"] = {"master_key": MASTER_KEY}
    config["database"] = {"url": f"sqlite:///{workdir / 'bench.db'}"}
    config["limits"] = {"rules": [
        {"scope": "key", "requests": 10_000_000, "tokens": 10_000_000_000, "window_seconds": 60},
        {"scope": "user", "requests": 10_000_000, "window_seconds": 3600},
        {"scope": "global", "tokens": 10_000_000_000, "window_seconds": 86400}]}
    if pipeline == "full-redis":
        config["redis"] = {"url": "redis://127.0.0.1:6379/15"}
        if redis_lease is not None:
            config["limits"]["redis_lease"] = redis_lease
    return config


async def create_key(url: str) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/api/v1/keys", json={"alias": "bench", "user_id": "bench-user"},
                          headers={"authorization": f"Bearer {MASTER_KEY}"}) as r:
            if r.status >= 300:
                raise RuntimeError(f"cannot create a virtual key: {r.status} {await r.text()}")
            data = await r.json()
            return str(data.get("key"))


@dataclass
class Row:
    target: str
    cells: dict[str, Any] = field(default_factory=dict)


def measure(label: str, url: str, pid: int | None, headers: dict[str, str], args: argparse.Namespace,
            rows: list[Row], slow: bool = True) -> None:
    row = Row(label)
    chat_url = f"{url}/v1/chat/completions"
    run_wrk(chat_url, 10, 1 if args.smoke else 3, CHAT, headers)  # warm-up
    for conns in (1, 50):
        c0 = cpu_seconds(pid) if pid else 0.0
        res = run_wrk(chat_url, conns, args.seconds, CHAT, headers)
        c1 = cpu_seconds(pid) if pid else 0.0
        row.cells[f"rps@{conns}"] = res["rps"]
        row.cells[f"p50@{conns}"] = res["lat_p50_ms"]
        row.cells[f"p99@{conns}"] = res["lat_p99_ms"]
        row.cells[f"err@{conns}"] = res["sock_errors"] + res["non2xx"]
        if pid:
            row.cells[f"cpu_ms@{conns}"] = 1000 * (c1 - c0) / max(1, res["requests"])
    s = asyncio.run(streams(chat_url, args.stream_requests, 1, headers, "mock"))
    row.cells["ttfb_p50"] = s["ttfb_p50_ms"]
    row.cells["stream_total_p50"] = s["total_p50_ms"]
    row.cells["streams_ok"] = f"{s['complete']}/{s['n']}"
    paced = asyncio.run(streams(chat_url, args.stream_requests, 1, headers, "paced"))
    row.cells["paced_ttfb_p50"] = paced["ttfb_p50_ms"]
    row.cells["paced_ok"] = f"{paced['complete']}/{paced['n']}"
    if slow:  # the relay has no route to the slow mock
        many = asyncio.run(streams(chat_url, args.slow_streams, args.slow_streams, headers, "slow"))
        row.cells["slow_streams_ok"] = f"{many['complete']}/{many['n']}"
    if pid:
        row.cells["rss_peak_mib"] = rss_mib(pid)  # right after the 1,000 streams ended
        time.sleep(3)  # the gateway gives memory back once idle (server/trim.py checks every 2 s)
        row.cells["rss_mib"] = rss_mib(pid)
    rows.append(row)


RELAY = "relay (floor)"


def render(rows: list[Row], startup: float, pipeline: str, paired: list[float] | None = None) -> str:
    direct = next((r for r in rows if r.target == "direct"), None)
    cols = [("RPS @50", "rps@50", "{:.0f}"), ("CPU ms/req @50", "cpu_ms@50", "{:.3f}"),
            ("CPU ms/req @1", "cpu_ms@1", "{:.3f}"), ("p50 ms @1", "p50@1", "{:.2f}"),
            ("p99 ms @1", "p99@1", "{:.2f}"), ("p50 ms @50", "p50@50", "{:.2f}"), ("p99 ms @50", "p99@50", "{:.2f}"),
            ("stream TTFB p50 ms", "ttfb_p50", "{:.2f}"), ("stream total p50 ms", "stream_total_p50", "{:.2f}"),
            ("streams [DONE]", "streams_ok", "{}"), ("paced stream TTFB p50 ms", "paced_ttfb_p50", "{:.2f}"),
            ("paced streams [DONE]", "paced_ok", "{}"), ("slow streams held", "slow_streams_ok", "{}"),
            ("RSS right after load MiB", "rss_peak_mib", "{:.1f}"), ("RSS 3 s after load MiB", "rss_mib", "{:.1f}"),
            ("errors", "err@50", "{}")]
    lines = [f"pipeline: {pipeline}; gateway start-up {startup:.2f}s", "",
             "| target | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        cells = [fmt.format(row.cells[key]) if key in row.cells else "-" for _, key, fmt in cols]
        lines.append(f"| {row.target} | " + " | ".join(cells) + " |")
    relay = next((r for r in rows if r.target == RELAY), None)
    lines.append("")
    for base, over in ((direct, "added"), (relay, "over the relay")):
        if base is None:
            continue
        for row in rows:
            if row is direct or row is base:
                continue
            added = [row.cells[k] - base.cells[k] for k in ("p50@1", "ttfb_p50", "paced_ttfb_p50")]
            lines.append(f"{row.target}: {over}: p50 @1 conn {added[0]:.3f} ms, stream TTFB p50 {added[1]:.3f} ms, "
                         f"paced stream TTFB p50 {added[2]:.3f} ms")
    if paired is not None:
        lines.append(f"added stream TTFB p50 against its own upstream called directly (the mock on the load "
                     f"generator's core, alternating rounds): {paired[0] - paired[1]:.3f} ms "
                     f"({paired[0]:.3f} through the gateway, {paired[1]:.3f} direct)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", choices=["bare", "full", "full-redis"], default="full")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--stream-requests", type=int, default=300)
    parser.add_argument("--slow-streams", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-lease", type=int, help="limits.redis_lease for full-redis (default: the gateway's)")
    parser.add_argument("--smoke", action="store_true", help="a short run that checks the harness works")
    parser.add_argument("--no-direct", action="store_true", help="measure neither the direct call nor the relay")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.stream_requests, args.slow_streams = 1, 20, 50
    if not shutil.which("wrk"):
        print("bench: wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {0})  # the streaming clients on the load generator's core, like wrk
    workdir = Path(tempfile.mkdtemp(prefix="llm-gateway-bench-"))
    py = sys.executable
    fast, slow, direct_port, relay_port, gw_port = free_port(), free_port(), free_port(), free_port(), free_port()
    procs: list[Proc] = []
    try:
        procs.append(start([py, str(HERE / "mock_upstream.py"), "--port", str(fast)], fast, "0"))
        procs.append(start([py, str(HERE / "mock_upstream.py"), "--port", str(slow)], slow, "0",
                           {"MOCK_CHUNK_DELAY_MS": "100", "MOCK_CHUNKS": "20"}))
        for p in procs:
            wait_http(f"http://127.0.0.1:{p.port}/health")
        rows: list[Row] = []
        if not args.no_direct:
            direct = start([py, str(HERE / "mock_upstream.py"), "--port", str(direct_port)], direct_port, "1")
            procs.append(direct)
            wait_http(f"http://127.0.0.1:{direct_port}/health")
            measure("direct", f"http://127.0.0.1:{direct_port}", direct.pid, {}, args, rows)
            direct.stop()
            relay = start([py, str(HERE / "relay.py"), "--port", str(relay_port), "--upstream", f"127.0.0.1:{fast}"],
                          relay_port, "1")
            procs.append(relay)
            wait_http(f"http://127.0.0.1:{relay_port}/health")
            measure(RELAY, f"http://127.0.0.1:{relay_port}", relay.pid, {}, args, rows, slow=False)
            relay.stop()
        config_path = workdir / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(gateway_config(args.pipeline, fast, slow, workdir, args.redis_lease)))
        cmd = [py, "-m", "llm_gateway", "--config", str(config_path), "--host", "127.0.0.1", "--port", str(gw_port),
               "--workers", str(args.workers)]
        gw = start(cmd, gw_port, "1" if args.workers == 1 else "0-1", log=workdir / "gateway.log")
        procs.append(gw)
        startup = wait_http(f"http://127.0.0.1:{gw_port}/health")
        url = f"http://127.0.0.1:{gw_port}"
        headers: dict[str, str] = {"user": "bench-user"}
        if args.pipeline != "bare":
            headers["authorization"] = f"Bearer {asyncio.run(create_key(url))}"
        measure(f"llm-gateway ({args.pipeline})", url, gw.pid, headers, args, rows)
        paired = asyncio.run(paired_ttfb(url, f"http://127.0.0.1:{fast}", headers, args.stream_requests))
        print(render(rows, startup, args.pipeline, paired))
        whole = f"{args.stream_requests}/"
        bad = [r for r in rows if r.cells.get("err@50") or not str(r.cells.get("streams_ok", "")).startswith(whole)
               or not str(r.cells.get("paced_ok", "")).startswith(whole)]
        return 1 if bad else 0
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
