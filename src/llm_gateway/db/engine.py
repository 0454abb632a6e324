"""Engines for `database.url` (SQLite by default, PostgreSQL for replicas) and schema upgrades on start."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision under migrations/versions (a test keeps the two in step). When the database already has
# it, Alembic is not imported at all: it would cost every gateway process ~11 MiB for nothing.
HEAD_REVISION = "ui_sessions"
_LOCK_ID = 0x6C6C6D67  # "llmg": serialises migrations of replicas starting together on one PostgreSQL
UPGRADE_COMMAND = "llm-gateway db upgrade"
log = logging.getLogger("llm_gateway.db")


class SchemaBehind(RuntimeError):
    """The database's schema is older than this gateway's, and the gateway is not to migrate it."""


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` use psycopg 3; everything else is taken as SQLAlchemy spells it."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@dataclass(frozen=True)
class Timeouts:
    """Bounds on a PostgreSQL connection, so that a database that stops answering (a network blackhole, not a
    refused connection) costs a timeout rather than a thread blocked for the kernel's ~15 minutes."""

    connect_s: float = 5.0
    statement_s: float = 30.0


def pg_connect_args(url_options: str | None, timeouts: Timeouts) -> dict[str, Any]:
    """psycopg arguments: connect timeout, server-side statement and idle-in-transaction timeouts and keepalives
    (kept with any `options` the URL has), TCP keepalives and a TCP user timeout (unacknowledged data gives up)."""
    args: dict[str, Any] = {"connect_timeout": max(1, math.ceil(timeouts.connect_s)), "keepalives": 1,
                            "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
    if timeouts.statement_s > 0:  # 0: none (migrations; a PgBouncer that refuses `options`)
        ms = max(1, int(timeouts.statement_s * 1000))
        # The server's side too: a session whose client went silent mid-transaction ends (and releases its
        # locks, e.g. on a ledger batch marker that the client's retry needs) instead of waiting for the kernel.
        url_options = (f"{url_options or ''} -c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
                       " -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3")
        args["tcp_user_timeout"] = ms
    if url_options:
        args["options"] = url_options.strip()
    return args


def make_engine(url: str, timeouts: Timeouts | None = None, *, pre_ping: bool = True, pool_size: int = 5) -> Engine:
    """`pre_ping=False`, for a caller that handles a failed connection itself: no round trip per checkout."""
    parsed = make_url(normalise_url(url))
    if parsed.get_driver_name() == "psycopg" and importlib.util.find_spec("psycopg") is None:
        raise ValueError("a postgresql:// database needs psycopg: pip install 'llm-gateway[postgres]'")
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping)
        if parsed.get_backend_name() == "postgresql":
            options = parsed.query.get("options")  # connect_args win over the URL's query: ours extend it
            kwargs["connect_args"] = pg_connect_args(options if isinstance(options, str) else None,
                                                     timeouts or Timeouts())
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the admin API read while the ledger writes; NORMAL sync is durable across process crashes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """Worker processes forked from one gateway start together: one migrates a SQLite file at a time."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def _revision_in(conn: Connection) -> str | None:
    # Asked within the migration's transaction: a failing SELECT would abort it on PostgreSQL.
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_schema(engine: Engine) -> None:
    """Raise SchemaBehind, naming the command that upgrades it, unless the schema is at this gateway's head."""
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise SchemaBehind(f"cannot reach the database to check its schema: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}") from None
    current = current_revision(engine)
    if current != HEAD_REVISION:
        raise SchemaBehind(f"the database schema is at revision {current or 'none (empty database)'}, this gateway "
                           f"needs {HEAD_REVISION}: run `{UPGRADE_COMMAND}` first (or set "
                           "database.migrate_on_start: true)")


def upgrade(engine: Engine) -> bool:
    """Bring the schema to the newest Alembic revision (idempotent; run at start-up and by the CLI). True when
    this call migrated; False when the schema was at head already (another process may have just migrated it)."""
    if current_revision(engine) == HEAD_REVISION:
        return False
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its import-time info lines say nothing to operators
    from alembic import command  # noqa: PLC0415  (only when the schema needs work; see HEAD_REVISION)
    from alembic.config import Config  # noqa: PLC0415

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _file_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        before = _revision_in(conn)  # again, under the lock: replicas that started together migrate once
        if before == HEAD_REVISION:
            return False
        log.warning("database: upgrading the schema from %s to %s", before or "an empty database", HEAD_REVISION)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True


def upgrade_in_child(engine: Engine) -> None:
    """`upgrade`, run by a short-lived child process when the schema is behind.

    The gateway calls this at start-up so that Alembic's modules never load into the long-running process.
    The child is forked, not started anew: it has SQLAlchemy loaded already, which saves most of a second
    of start-up on a new database. It opens its own connections; the parent's pool is emptied first so that
    no connection is shared across the fork.
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: migrate, report a failure through the pipe, and leave without any clean-up
        status = 0
        try:
            os.close(read_end)
            upgrade(make_engine(url, Timeouts(statement_s=0)))
        except BaseException as exc:  # everything must reach the parent
            status = 1
            with contextlib.suppress(OSError):
                os.write(write_end, f"{type(exc).__name__}: {exc}"[-2000:].encode("utf-8", "replace"))
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode("utf-8", "replace")
    _, wait_status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(wait_status) != 0:
        raise RuntimeError(f"database migration failed: {report or 'the migration process died'}")
