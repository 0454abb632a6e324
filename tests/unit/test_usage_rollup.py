"""The ledger writer keeps the hourly, daily and monthly rollups equal to the sums of the rows it wrote, on SQLite
and PostgreSQL, and the migration fills them from a ledger that existed before it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from tests.unit.test_usage_ledger import row

from llm_gateway.db.engine import MIGRATIONS, make_engine, upgrade
from llm_gateway.telemetry.metrics import Registry
from llm_gateway.usage.ledger import Ledger
from llm_gateway.usage.rollup import rebuild

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path}/rollup.db")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    schema = f"dashboard_rollup_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception:
        pytest.skip("PostgreSQL is not reachable")
    eng = make_engine(f"{PG}?options=-csearch_path%3D{schema}")
    upgrade(eng)
    yield eng
    eng.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def sample(i: int) -> dict[str, Any]:
    r = row(i)
    r.update(ts=T0 + (i % 3) * HOUR + i, key_id=f"k{i % 2}", team_id="t" if i % 2 else None,
             cost_usd=0.5, status=429 if i % 5 == 0 else 200, prompt_tokens=10, completion_tokens=i)
    return r


def rollup(engine: Engine, period: str, dim: str) -> dict[tuple[int, str], tuple[int, int, float, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("select bucket, value, requests, completion_tokens, cost_usd, errors "
                                 "from gw_usage_rollup where period = :p and dim = :d"), {"p": period, "d": dim})
        return {(int(b), v): (int(n), int(c), round(float(usd), 6), int(e)) for b, v, n, c, usd, e in rows}


async def test_written_batches_are_summed_into_every_period(engine: Engine) -> None:
    # Written by stop()'s flush at normal priority, 7 rows a batch: the idle-priority writer can starve on a
    # machine busy with other tests.
    lg = Ledger(engine, Registry(), batch_size=7, interval=0.02)
    for i in range(40):
        lg.record(sample(i))
    await lg.stop()
    assert not lg.pending
    assert rollup(engine, "hour", "all") == {
        (T0 + h * HOUR, ""): (len(ids := [i for i in range(40) if i % 3 == h]), sum(ids), 0.5 * len(ids),
                              sum(1 for i in ids if i % 5 == 0)) for h in range(3)}
    assert rollup(engine, "day", "key") == {
        (T0, "k0"): (20, sum(range(0, 40, 2)), 10.0, 4), (T0, "k1"): (20, sum(range(1, 40, 2)), 10.0, 4)}
    assert rollup(engine, "month", "team") == {(T0, ""): (20, sum(range(0, 40, 2)), 10.0, 4),
                                               (T0, "t"): (20, sum(range(1, 40, 2)), 10.0, 4)}
    assert rollup(engine, "month", "status") == {(T0, "200"): (32, 780 - 140, 16.0, 0), (T0, "429"): (8, 140, 4.0, 8)}
    before = rollup(engine, "hour", "key")
    rebuild(engine)  # the migration's backfill computes the same sums from the ledger
    assert rollup(engine, "hour", "key") == before


def test_the_migration_fills_the_rollups_from_an_existing_ledger(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "metadata")  # the schema before the dashboard, with a ledger in it
        later = ("trace_id", "error", "attempts", "attempt_log", "guardrails")  # columns added after "metadata"
        old = {k: v for k, v in sample(1).items() if k not in later}
        for i in range(3):
            conn.execute(text(f"insert into gw_usage ({', '.join(old)}) values ({', '.join(':' + k for k in old)})"),
                         {**old, "request_id": f"r{i}"})
    upgrade(engine)
    assert rollup(engine, "month", "key") == {(T0, "k1"): (3, 3, 1.5, 0)}
    engine.dispose()
