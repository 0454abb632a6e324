"""The response store: each stored response's own input items and its Response object, by id and owner.

A response is read only by its owner (`owner_of`): another team's key gets the same answer as for an id that
never existed. Writes are single-row inserts, made before the client sees `response.completed`, so another
replica can chain on the response as soon as the client has it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select

from llm_gateway.db.tables import fit_text, responses, width_of
from llm_gateway.keys.model import KeyRecord, Principal

MAX_CHAIN = 1000  # previous_response_id links followed at most (a chain longer than this is cut at its start)
ID_WIDTH = width_of(responses.c.id)
MODEL_WIDTH = width_of(responses.c.model)


def _storable(response_id: str) -> bool:
    """Whether an id a client names could be stored at all: PostgreSQL refuses NUL in text (an error, not a miss),
    and an id wider than the column never was one."""
    return len(response_id) <= ID_WIDTH and "\x00" not in response_id


def owner_of(identity: KeyRecord | Principal | None) -> str:
    """Who may read a response the caller stores: the key's team, else the key; "" when keys are not in use."""
    if identity is None:
        return ""
    if isinstance(identity, KeyRecord):
        return f"team:{identity.team_id}" if identity.team_id else f"key:{identity.id}"
    return "master"


@dataclass(slots=True)
class Stored:
    id: str
    previous_response_id: str | None
    input: list[dict[str, Any]]
    response: dict[str, Any]


class ResponseStore:
    def __init__(self, engine: Engine, clock: Any = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def put(self, owner: str, input_items: list[dict[str, Any]], response: dict[str, Any]) -> None:
        row = {"id": response["id"], "owner": owner, "created_at": int(self.clock() * 1000),
               "previous_response_id": response.get("previous_response_id"),
               # a client chooses the model name (a wildcard route): its column takes it; the response keeps it whole
               "model": fit_text(str(response.get("model", "")), MODEL_WIDTH),
               "input": orjson.dumps(input_items).decode(), "response": orjson.dumps(response).decode()}
        with self.engine.begin() as conn:
            conn.execute(insert(responses).values(**row))

    def get(self, response_id: str, owner: str) -> Stored | None:
        if not _storable(response_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(responses.c.previous_response_id, responses.c.input, responses.c.response)
                               .where(responses.c.id == response_id, responses.c.owner == owner)).first()
        if row is None:
            return None
        return Stored(response_id, row.previous_response_id, orjson.loads(row.input), orjson.loads(row.response))

    def delete(self, response_id: str, owner: str) -> bool:
        if not _storable(response_id):
            return False
        with self.engine.begin() as conn:
            done = conn.execute(delete(responses).where(responses.c.id == response_id, responses.c.owner == owner))
        return bool(done.rowcount)

    def chain(self, response_id: str, owner: str) -> list[Stored] | None:
        """The response and those it follows, oldest first; None when the response itself is not the owner's.
        A deleted or expired response earlier in the chain ends it there."""
        out: list[Stored] = []
        at: str | None = response_id if _storable(response_id) else None
        with self.engine.connect() as conn:
            while at is not None and len(out) < MAX_CHAIN:
                row = conn.execute(select(responses.c.previous_response_id, responses.c.input,
                                          responses.c.response)
                                   .where(responses.c.id == at, responses.c.owner == owner)).first()
                if row is None:
                    break
                out.append(Stored(at, row.previous_response_id, orjson.loads(row.input),
                                  orjson.loads(row.response)))
                at = row.previous_response_id
        if not out:
            return None
        out.reverse()
        return out

    def purge(self, older_than_s: float) -> int:
        """Delete the responses stored more than `older_than_s` seconds ago; return how many went."""
        cutoff = int((self.clock() - older_than_s) * 1000)
        with self.engine.begin() as conn:
            done = conn.execute(delete(responses).where(responses.c.created_at < cutoff))
        return int(done.rowcount or 0)


def conversation(chain: list[Stored]) -> list[dict[str, Any]]:
    """The items a chain of responses amounts to: each one's input, then its output, in order."""
    items: list[dict[str, Any]] = []
    for stored in chain:
        items.extend(stored.input)
        items.extend(stored.response.get("output") or ())
    return items
