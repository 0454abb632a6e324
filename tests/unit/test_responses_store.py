"""The response store on SQLite: owners, chains, deletion and retention."""

from __future__ import annotations

from pathlib import Path

from llm_gateway.db.engine import make_engine, upgrade
from llm_gateway.keys.model import MASTER, KeyRecord
from llm_gateway.responses.store import ResponseStore, conversation, owner_of


def test_owners_chains_and_retention(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(engine)
    now = [1000.0]
    store = ResponseStore(engine, clock=lambda: now[0])
    assert owner_of(None) == "" and owner_of(MASTER) == "master"
    assert owner_of(KeyRecord("k1", "h", "p", team_id="t1")) == "team:t1"
    assert owner_of(KeyRecord("k2", "h", "p")) == "key:k2"
    ask = [{"type": "message", "role": "user", "content": "q"}]
    answer = [{"type": "message", "role": "assistant", "content": []}]
    store.put("team:t1", ask, {"id": "resp_1", "model": "m", "output": answer})
    now[0] += 100
    store.put("team:t1", ask, {"id": "resp_2", "model": "m", "output": answer, "previous_response_id": "resp_1"})
    chain = store.chain("resp_2", "team:t1")
    assert chain is not None and [s.id for s in chain] == ["resp_1", "resp_2"]
    assert conversation(chain) == ask + answer + ask + answer
    assert store.chain("resp_2", "key:k2") is None and store.get("resp_1", "team:t2") is None
    assert not store.delete("resp_1", "key:k2")
    now[0] += 100
    assert store.purge(150) == 1  # resp_1 is 200 s old, resp_2 100 s
    chain = store.chain("resp_2", "team:t1")
    assert chain is not None and [s.id for s in chain] == ["resp_2"]  # the chain starts where history ends
    assert store.delete("resp_2", "team:t1") and store.get("resp_2", "team:t1") is None
