"""Request ids: 32 hex digits, unique in a process, and a forked worker does not repeat its parent's ids."""

from __future__ import annotations

import os

from llm_gateway.api.openai import new_request_id


def test_ids_are_hex_unique_and_differ_across_fork() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what would a --workers process draw next?
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_request_id()
    assert child[:20] != parent[:20]  # its own prefix, so the two counters never collide
