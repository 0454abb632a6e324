"""`llm-gateway db upgrade` and `llm-gateway db current`: schema migrations as their own deployment step."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from llm_gateway.db.engine import HEAD_REVISION, UPGRADE_COMMAND, Timeouts, current_revision, make_engine, upgrade

COMMANDS = ("db",)


def add_parsers(sub: Any) -> None:
    db = sub.add_parser("db", help="database schema: upgrade it, or show its revision")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="{upgrade,current}")
    for name, text in (("upgrade", "bring the schema to this version's newest revision (safe to run from "
                                   "several processes at once: one migrates, the others wait)"),
                       ("current", "print the schema's revision; exit 1 when it is older than this version's")):
        parser = db_sub.add_parser(name, help=text)
        parser.add_argument("--database-url", dest="database_url", default=argparse.SUPPRESS,
                            help="database to use [LLM_GATEWAY_DATABASE_URL] (default: database.url of --config)")
        parser.add_argument("--config", dest="config", default=argparse.SUPPRESS, help="YAML configuration file")


def run(args: argparse.Namespace, database_url: str) -> int:
    # No statement timeout: a migration may rewrite a large table.
    engine = make_engine(database_url, Timeouts(statement_s=0))
    try:
        if args.db_command == "upgrade":
            migrated = upgrade(engine)
            print(f"database schema at {HEAD_REVISION} (head){'' if migrated else ', nothing to do'}")
            return 0
        with engine.connect():  # an unreachable database is an error here, not "no schema"
            pass
        current = current_revision(engine)
        if current == HEAD_REVISION:
            print(f"{current} (head)")
            return 0
        print(f"{current or 'none'} (head is {HEAD_REVISION}: run `{UPGRADE_COMMAND}`)")
        return 1
    except SQLAlchemyError as exc:
        print(f"llm-gateway: database error: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
