"""Operator subcommands on the database named by `database.url`: `keys create|list|block|delete` and `usage`.

A running gateway sees changes made here within `auth.key_cache_ttl_s` (its key cache re-reads stale keys).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from llm_gateway.db.engine import make_engine, upgrade
from llm_gateway.errors import GatewayError
from llm_gateway.keys.fields import KEY_FIELDS, validate
from llm_gateway.keys.model import PERIODS
from llm_gateway.keys.store import Store
from llm_gateway.usage.report import GROUPS, timestamp_ms, usage_report

COMMANDS = ("keys", "usage")


def _common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given after the subcommand, these override the top-level flags; absent, they leave them be.
    parser.add_argument("--database-url", dest="database_url", default=argparse.SUPPRESS,
                        help="database to use [LLM_GATEWAY_DATABASE_URL] (default: database.url of --config)")
    parser.add_argument("--config", dest="config", default=argparse.SUPPRESS, help="YAML configuration file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage virtual keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="create|list|block|delete")
    create = keys_sub.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--alias")
    create.add_argument("--user", dest="user_id")
    create.add_argument("--team", dest="team_id")
    create.add_argument("--models", help="comma-separated model names or aliases the key may use (default: all)")
    create.add_argument("--budget", dest="budget_usd", type=float, help="budget in USD")
    create.add_argument("--budget-period", choices=PERIODS, default="total")
    create.add_argument("--rpm", dest="rpm_limit", type=int)
    create.add_argument("--tpm", dest="tpm_limit", type=int)
    create.add_argument("--expires-in-days", type=float)
    create.add_argument("--allow-overrides", action=argparse.BooleanOptionalAction, default=None,
                        help="may steer routing with x-gateway fallbacks/provider/hedge/retries (default: as its "
                             "team allows; else no)")
    create.add_argument("--allow-passthrough", action=argparse.BooleanOptionalAction, default=None,
                        help="may call /v1/* paths the gateway passes through unmodelled (default: as its team "
                             "allows; else no)")
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--after", help="the last id of the previous page")
    listing.add_argument("--user", dest="user_id")
    listing.add_argument("--team", dest="team_id")
    block = keys_sub.add_parser("block", help="block a key (or --unblock it)")
    block.add_argument("key_id")
    block.add_argument("--unblock", action="store_true")
    delete = keys_sub.add_parser("delete", help="delete a key")
    delete.add_argument("key_id")
    for parser in (create, listing, block, delete):
        _common(parser)
    usage = sub.add_parser("usage", help="usage and cost over a time range, as a table")
    usage.add_argument("--since", help="epoch ms or ISO 8601 (default: 30 days ago)")
    usage.add_argument("--until", help="epoch ms or ISO 8601 (default: now)")
    usage.add_argument("--group-by", choices=tuple(GROUPS), default="model")
    usage.add_argument("--limit", type=int, default=100)
    for name in ("key_id", "user_id", "team_id", "model"):
        usage.add_argument(f"--{name.replace('_id', '')}", dest=name)
    _common(usage)


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    text = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(t[i]) for t in text)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)) for t in text]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace, database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        store = Store(engine)
        if args.command == "usage":
            return _usage(args, engine)
        return _keys(args, store)
    except GatewayError as exc:
        print(f"llm-gateway: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if args.json else text)


def _keys(args: argparse.Namespace, store: Store) -> int:
    command = args.keys_command
    if command == "create":
        body: dict[str, Any] = {name: getattr(args, name) for name in (
            "alias", "user_id", "team_id", "budget_usd", "rpm_limit", "tpm_limit", "allow_overrides",
            "allow_passthrough") if getattr(args, name) is not None}
        body["budget_period"] = args.budget_period
        if args.models:
            body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
        if args.expires_in_days is not None:
            body["expires_in_s"] = args.expires_in_days * 86400
        secret, key = store.create_key(validate(body, KEY_FIELDS, creating=True))
        _print(args, {**key.public(), "key": secret},
               f"created key {key.id}\n{secret}\n(store it now: it is not shown again)")
        return 0
    if command == "list":
        found = store.list_keys(args.after, args.limit, user_id=args.user_id, team_id=args.team_id)
        rows = [k.public() for k in found]
        for row in rows:
            row["models"] = ",".join(row["models"]) if row["models"] is not None else "*"
        _print(args, rows, table(rows, ("id", "key_prefix", "alias", "user_id", "team_id", "models",
                                        "budget_usd", "budget_period", "blocked")))
        return 0
    if command == "block":
        updated = store.update_key(args.key_id, {"blocked": not args.unblock})
        if updated is None:
            print(f"llm-gateway: no key {args.key_id!r}", file=sys.stderr)
            return 1
        _print(args, updated.public(), f"{'unblocked' if args.unblock else 'blocked'} key {updated.id}")
        return 0
    deleted = store.delete_key(args.key_id)
    if deleted is None:
        print(f"llm-gateway: no key {args.key_id!r}", file=sys.stderr)
        return 1
    _print(args, {"id": deleted.id, "deleted": True}, f"deleted key {deleted.id}")
    return 0


def _usage(args: argparse.Namespace, engine: Any) -> int:
    from_ms = timestamp_ms(args.since, "--since") if args.since else None
    until_ms = timestamp_ms(args.until, "--until") if args.until else int(time.time() * 1000) + 1
    start = from_ms if from_ms is not None else until_ms - 30 * 86_400_000
    filters = {n: getattr(args, n) for n in ("key_id", "user_id", "team_id", "model") if getattr(args, n)}
    report = usage_report(engine, start, until_ms, args.group_by, filters, args.limit)
    columns = (args.group_by, "total_requests", "prompt_tokens", "completion_tokens", "total_tokens",
               "total_cost", "cache_hits", "errors")
    rows = [*report["groups"], {args.group_by: "TOTAL", **report["totals"]}]
    _print(args, report, table(rows, columns))
    return 0

