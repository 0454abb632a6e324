"""A PostgreSQL schema of a test's own on the local server (database `test`): what a gateway or `make_engine` is
given as `database.url`, dropped when the test is done."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_schema(prefix: str, skip_unavailable: bool = False) -> Iterator[str]:
    """The URL of a new schema named `prefix_<random>`; `skip_unavailable`: skip the test when PostgreSQL does not
    answer (otherwise that is an error)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(SERVER.replace("postgresql://", "postgresql+psycopg://"),
                           connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        engine.dispose()
        if not skip_unavailable:
            raise
        pytest.skip(f"PostgreSQL is not available: {exc}")
    try:
        yield f"{SERVER}?options=-csearch_path%3D{schema}"
    finally:
        _drop(engine, schema)


def _drop(engine: Engine, schema: str) -> None:
    """Drop the schema; a gateway of the test may still be running (fixtures end in any order) and deadlock the
    drop with its own statements: PostgreSQL then aborts one side, and the drop is tried again."""
    try:
        for attempt in range(5):
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                return
            except OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()
