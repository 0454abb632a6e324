"""Schema upgrades at start-up: done by a forked child, which reports its failures; Alembic stays out of the gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from llm_gateway.db.engine import HEAD_REVISION, current_revision, make_engine, upgrade_in_child


def test_a_new_database_is_migrated_by_a_child_and_alembic_never_loads_here(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    script = (
        "import sys\n"
        "from llm_gateway.db.engine import make_engine, upgrade_in_child, current_revision\n"
        f"engine = make_engine('sqlite:///{db}')\n"
        "upgrade_in_child(engine)\n"
        "print(current_revision(engine), 'alembic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == [HEAD_REVISION, "False"]
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        tables = {row[0] for row in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
    assert {"gw_keys", "gw_usage", "gw_teams", "gw_users", "alembic_version"} <= tables
    upgrade_in_child(engine)  # up to date: nothing to do, no child
    assert current_revision(engine) == HEAD_REVISION
    engine.dispose()


def test_a_failed_migration_says_why(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'clash.db'}")
    with engine.begin() as conn:  # a table of that name but no migration history: the first revision clashes
        conn.execute(text("CREATE TABLE gw_teams (id TEXT)"))
    with pytest.raises(RuntimeError, match=r"database migration failed: .*gw_teams already exists"):
        upgrade_in_child(engine)
    assert current_revision(engine) is None  # the parent's engine still works after the fork
    engine.dispose()
