"""Real Redis topologies on loopback for the tests: a Cluster of 3 primaries (each with a replica) and a primary with
a replica watched by two sentinels. Started from the redis-server / redis-sentinel binaries (scripts/test.sh
installs them), each on free ports, in a temporary directory."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import free_ports_in_a_row

FAST = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--protected-mode", "no"]


def cluster_ports(n: int) -> list[int]:
    """n ports in a row, each free together with its cluster bus port (+10000)."""
    while True:
        first = random.randrange(20000, 30000 - n)
        wanted = [*range(first, first + n), *range(first + 10000, first + 10000 + n)]
        socks = []
        try:
            for port in wanted:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return wanted[:n]
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()


def binaries_present() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-sentinel") is not None


def _wait(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready in {timeout:g}s ({last!r})")


class Nodes:
    """redis-server (or sentinel) processes by port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, *args: str, sentinel_conf: Path | None = None) -> None:
        work = self.root / str(port)
        work.mkdir(parents=True, exist_ok=True)
        log = (work / "log").open("wb")
        if sentinel_conf is not None:
            cmd = ["redis-sentinel", str(sentinel_conf), "--port", str(port)]
        else:
            cmd = ["redis-server", "--port", str(port), "--dir", str(work), *FAST, *args]
        proc = self.procs[port] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} on {port} exited: {(work / 'log').read_text(errors='replace')}")
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        _wait(up, f"redis on {port}")

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


class Cluster(Nodes):
    """3 primaries and 3 replicas; `cluster-node-timeout` 1 s so a failover takes a few seconds."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.ports = cluster_ports(6)
        try:
            for port in self.ports:
                self.start(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                           "--cluster-node-timeout", "1000")
            subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                            "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True,
                           timeout=60)
            _wait(self.healthy, "the cluster", 30)
        except BaseException:
            self.stop()  # no node outlives a setup that failed
            raise

    def healthy(self) -> bool:
        alive = [p for p in self.ports if self.procs[p].poll() is None]
        return all("cluster_state:ok" in subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"],
                                                         capture_output=True, text=True, timeout=5).stdout
                   for p in alive)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0])

    def primary_of(self, key: str) -> int:
        slot = self.client().keyslot(key)
        for first, last, primary, *_ in redis.Redis(port=self.ports[0]).execute_command("CLUSTER SLOTS"):
            if first <= slot <= last:
                return int(primary[1])
        raise LookupError(slot)


class Sentinels(Nodes):
    """A primary, its replica, and two sentinels (quorum 1) that fail over after 1 s of silence."""

    name = "gwmaster"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        first = free_ports_in_a_row(4)
        self.primary, self.replica = first, first + 1
        self.sentinels = [first + 2, first + 3]
        try:
            self.start(self.primary, "--repl-diskless-sync-delay", "0")
            self.start(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
            for port in self.sentinels:
                conf = root / f"sentinel-{port}.conf"
                conf.write_text(f"sentinel monitor {self.name} 127.0.0.1 {self.primary} 1\n"
                                f"sentinel down-after-milliseconds {self.name} 1000\n"
                                f"sentinel failover-timeout {self.name} 5000\n"
                                f"sentinel parallel-syncs {self.name} 1\n")
                self.start(port, sentinel_conf=conf)
            _wait(lambda: redis.Redis(port=self.replica).info("replication")["master_link_status"] == "up",
                  "the replica's link")
        except BaseException:
            self.stop()
            raise

    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.sentinels]

    def current_primary(self) -> int:
        _host, port = redis.Redis(port=self.sentinels[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(port)
