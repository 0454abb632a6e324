"""SIGTERM lets in-flight streams finish; workers die with their supervisor; LangChain works with a user header."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
from tests.conftest import GatewayProcess, upstream_args
from tests.upstream import Upstream

MESSAGES = [{"role": "user", "content": "hi"}]
QUICK_STOP = {"server": {"shutdown_grace_s": 2}}  # a worker that SIGTERM cannot stop is forced out after 7 s


def test_sigterm_lets_inflight_stream_finish_and_refuses_new(gateway_factory: Callable[..., GatewayProcess],
                                                             upstream: Upstream) -> None:
    gw = gateway_factory(upstream_args(upstream))
    c = openai.OpenAI(base_url=gw.v1, api_key="k", max_retries=0)
    result: dict[str, str] = {}

    def consume() -> None:
        stream = c.chat.completions.create(model="slow-200", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        result["text"] = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.4)  # the stream is under way (5 chunks, 200 ms apart)
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        refused = httpx.post(f"{gw.v1}/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=2)
        assert refused.status_code != 200
    except httpx.TransportError:
        pass  # the listener is closed: that is the expected refusal
    t.join(10)
    assert result["text"] == "The quick brown fox jumps"
    assert gw.proc.wait(10) == 0


def test_langchain_chat_openai_with_user_header(gateway: GatewayProcess, upstream: Upstream) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=gateway.v1, api_key="sk-lc", model="gpt-4o-mini",  # type: ignore[arg-type]
                     default_headers={"user": "user1"}, max_retries=0)
    reply = llm.invoke("Say hello")
    assert reply.content == "The quick brown fox jumps"
    assert upstream.requests[-1].headers.get("user") is None  # the user header stays at the gateway
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'tokens_by_user_by_model_total{user="user1",model="gpt-4o-mini"} 16' in metrics
    chunks = list(llm.stream("Say hello"))
    assert "".join(str(ch.content) for ch in chunks) == "The quick brown fox jumps"


def test_workers_stop_when_their_supervisor_is_killed(gateway_factory: Callable[..., GatewayProcess],
                                                      upstream: Upstream) -> None:
    gw = gateway_factory(["--workers", "2", *upstream_args(upstream)], config=QUICK_STOP)
    supervisor = gw.proc.pid
    workers = []
    deadline = time.monotonic() + 10
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = [int(d) for d in os.listdir("/proc") if d.isdigit() and _parent_of(int(d)) == supervisor]
        time.sleep(0.05)
    assert len(workers) == 2
    gw.proc.kill()  # SIGKILL: the supervisor cannot forward anything
    gw.proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived their supervisor"
    _warn_if_forced(gw)


def test_a_dead_worker_is_started_again(gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    gw = gateway_factory(["--workers", "2", *upstream_args(upstream)])
    workers = _children_of(gw.proc.pid, 2)
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    now = workers
    while time.monotonic() < deadline:
        now = [w for w in _children(gw.proc.pid) if _alive(w)]
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.1)
    assert len(now) == 2 and workers[0] not in now, f"no worker took the dead one's place: {now}"
    for _ in range(6):  # both workers answer (the port is shared)
        assert httpx.get(f"{gw.url}/health", timeout=5).status_code == 200
    assert gw.proc.poll() is None



def test_a_worker_started_again_just_before_its_supervisor_is_killed_stops_too(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    gw = gateway_factory(["--workers", "2", *upstream_args(upstream)], config=QUICK_STOP)
    supervisor = gw.proc.pid
    first = _children_of(supervisor, 2)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the replacement is forked; it has not built its application yet
        workers = [w for w in _children(supervisor) if w != first[0]]
        if len(workers) == 2:
            break
        time.sleep(0.005)
    assert len(workers) == 2
    gw.proc.kill()  # SIGKILL: before the new worker could ask to be told of its supervisor's death
    gw.proc.wait()
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [w for w in workers if _alive(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "a worker outlived its supervisor"
    _warn_if_forced(gw)


def _warn_if_forced(gw: GatewayProcess) -> None:
    """The workers stopped; say so in the test report if one had to be forced (its SIGTERM did not stop it)."""
    forced = [line for line in gw.log_path.read_text(errors="replace").splitlines() if "exiting now" in line]
    if forced:
        warnings.warn(f"a worker was forced to exit: {forced}", stacklevel=2)


def test_a_worker_told_twice_to_stop_while_it_starts_stops(gateway_factory: Callable[..., GatewayProcess],
                                                            upstream: Upstream) -> None:
    gw = gateway_factory(["--workers", "2", *upstream_args(upstream)])
    supervisor = gw.proc.pid
    first = _children_of(supervisor, 2)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    fresh: list[int] = []
    while not fresh and time.monotonic() < deadline:
        fresh = [w for w in _children(supervisor) if w not in first]
        time.sleep(0.005)
    assert fresh
    os.kill(fresh[0], signal.SIGTERM)  # while it builds its application, then again: as a supervisor that
    time.sleep(0.01)                   # forwards a stop and then dies would
    os.kill(fresh[0], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(fresh[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    stuck = _alive(fresh[0])
    if stuck:
        os.kill(fresh[0], signal.SIGKILL)
    assert not stuck, "the worker never stopped"

def _children(parent: int) -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and _parent_of(int(d)) == parent]


def _children_of(parent: int, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    found: list[int] = []
    while len(found) < count and time.monotonic() < deadline:
        found = _children(parent)
        time.sleep(0.05)
    assert len(found) == count
    return found


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def process_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_while_idle(gw: GatewayProcess, seconds: float) -> float:
    before = process_cpu(gw.proc.pid)
    time.sleep(seconds)
    return process_cpu(gw.proc.pid) - before


def test_busy_polling_is_gone_an_old_setting_still_starts_with_a_warning_and_costs_no_cpu(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream) -> None:
    # Polling on the event loop's thread starved granian's I/O thread on the same core: the setting is ignored
    gw = gateway_factory(upstream_args(upstream), env={"LLM_GATEWAY_BUSY_POLL_US": "300000"})
    assert "server.busy_poll_us has no effect" in gw.log()
    time.sleep(0.5)  # whatever start-up and /health opened has closed
    with httpx.Client(base_url=gw.v1) as client:
        before = process_cpu(gw.proc.pid)
        for _ in range(10):  # a request every ~0.1 s: a 300 ms window would have polled through every gap
            assert client.post("/chat/completions", json={"model": "m", "messages": MESSAGES}).status_code == 200
            time.sleep(0.1)
        spent = process_cpu(gw.proc.pid) - before
    assert spent < 0.2, spent
    assert cpu_while_idle(gw, 0.3) < 0.1


def test_a_worker_that_cannot_stop_is_forced_out_when_its_supervisor_dies(tmp_path: Path) -> None:
    """A worker whose stop signals are still held (it hangs in start-up) goes 5 s after its supervisor's death."""
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import os, time
        from llm_gateway import runner
        supervisor = os.getpid()
        if os.fork() == 0:
            runner._hold_stop_signals()
            runner._die_with_supervisor(supervisor, 0.0)
            print(os.getpid(), flush=True)
            time.sleep(60)
        time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    worker = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    killed = time.monotonic()
    while _alive(worker) and time.monotonic() - killed < 15:
        time.sleep(0.05)
    assert not _alive(worker)
    assert 4 < time.monotonic() - killed < 10  # SIGTERM could not stop it; the forced exit did
    log = proc.stderr.read().decode()
    assert f"the supervisor (pid {proc.pid}) is gone" in log and "exiting now" in log
