"""Migrations as their own step on one PostgreSQL: `db upgrade` / `db current`, the schema check at start, and three
gateway processes starting at once (none migrates after `db upgrade`; with migrate_on_start exactly one does); the
upgrade of a database with users to team memberships (PostgreSQL and SQLite)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import column, insert, table
from tests.conftest import GatewayProcess, wait_until_answering
from tests.pg import fresh_schema
from tests.upstream import Upstream

from llm_gateway.db.engine import HEAD_REVISION, MIGRATIONS, Timeouts, make_engine
from llm_gateway.keys.store import Store

MIGRATED = "database: upgrading the schema"


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_schema("deploy_mig") as url:
        yield url


def db(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_gateway", "db", *args], capture_output=True, text=True,
                          timeout=60)


def config(upstream: Upstream, url: str, migrate: bool) -> dict[str, Any]:
    return {"providers": [{"name": "up", "type": "openai-compatible", "base_url": f"{upstream.url}/v1",
                           "models": ["*"]}],
            "database": {"url": url, "migrate_on_start": migrate}}


def start_three(factory: Callable[..., GatewayProcess], cfg: dict[str, Any]) -> list[GatewayProcess]:
    gws = [factory(config=cfg, wait=False) for _ in range(3)]
    for gw in gws:
        wait_until_answering(gw.proc, f"{gw.url}/health", gw.log_path, 60, "gateway")
    return gws


def test_old_schema_refused_then_db_upgrade_first_and_none_migrates(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str) -> None:
    refused = gateway_factory(config=config(upstream, db_url, False), wait=False)
    assert refused.proc.wait(60) != 0
    assert "run `llm-gateway db upgrade` first" in refused.log()
    assert "Traceback" not in refused.log()

    current = db("current", "--database-url", db_url)
    assert current.returncode == 1 and "llm-gateway db upgrade" in current.stdout
    assert db("upgrade", "--database-url", db_url).returncode == 0
    current = db("current", "--database-url", db_url)
    assert (current.returncode, current.stdout.strip()) == (0, f"{HEAD_REVISION} (head)")

    gws = start_three(gateway_factory, config(upstream, db_url, False))
    assert not any(MIGRATED in gw.log() for gw in gws)
    assert all(gw.stop() == 0 for gw in gws)


def test_three_processes_migrate_on_start_exactly_one_migrates(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, db_url: str) -> None:
    gws = start_three(gateway_factory, config(upstream, db_url, True))
    assert sum(MIGRATED in gw.log() for gw in gws) == 1
    assert db("current", "--database-url", db_url).returncode == 0
    assert all(gw.stop() == 0 for gw in gws)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrading_a_database_with_users_makes_their_team_their_membership(backend: str, db_url: str,
                                                                           tmp_path: Path) -> None:
    """A database at the revision before memberships, with users of one team each, upgraded by `llm-gateway db
    upgrade`: each user's team_id becomes its one membership (and stays its primary team); a user of no team has
    none."""
    url = db_url if backend == "postgres" else f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url, Timeouts(statement_s=0))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "guardrails")
    users = table("gw_users", column("id"), column("team_id"), column("metadata"), column("created_at"),
                  column("updated_at"), column("budget_period"), column("role"))
    with engine.begin() as conn:
        conn.execute(insert(users), [
            {"id": uid, "team_id": team, "metadata": "{}", "created_at": 1, "updated_at": 1,
             "budget_period": "total", "role": "user"}
            for uid, team in (("ann", "red"), ("bob", "blue"), ("cy", None))])
    engine.dispose()
    upgraded = db("upgrade", "--database-url", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert db("current", "--database-url", url).stdout.strip() == f"{HEAD_REVISION} (head)"
    store = Store(make_engine(url))
    assert store.teams_of_users(["ann", "bob", "cy"]) == {"ann": ["red"], "bob": ["blue"], "cy": []}
    assert [u.id for u in store.list_users(None, 10, "red")] == ["ann"]
    store.engine.dispose()
