"""Usage rollups: hourly, daily and monthly sums of the ledger by key, user, team, model, provider and status.

The ledger writer folds each batch into `gw_usage_rollup` in the batch's own transaction (usage/ledger.py), so a
rollup is exactly the sum of the rows written: the dashboard reads these few rows, never the raw ledger. One
statement per period, the dimensions as a UNION ALL of GROUP BYs, each row an upsert that adds to what is there.
Rows are upserted in key order, so that two replicas' writers that touch the same rows lock them in the same order.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

PERIODS = ("hour", "day", "month")
# dimension -> the ledger expression it groups by ("" for none: NULL would defeat the unique index)
DIMENSIONS = {
    "all": "''",
    "key": "coalesce(key_id, '')",
    "user": "coalesce(user_id, '')",
    "team": "coalesce(team_id, '')",
    "model": "model",
    "provider": "provider",
    "status": "cast(status as varchar(8))",
}
SUMS = {
    "requests": "count(*)",
    "prompt_tokens": "sum(prompt_tokens)",
    "completion_tokens": "sum(completion_tokens)",
    "cached_tokens": "sum(cached_tokens)",
    "reasoning_tokens": "sum(reasoning_tokens)",
    "cost_usd": "sum(cost_usd)",
    "errors": "sum(case when status >= 400 then 1 else 0 end)",
    "cache_hits": "sum(case when cache_hit then 1 else 0 end)",
    "latency_ms": "sum(latency_ms)",
}
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def bucket_sql(period: str, dialect: str) -> str:
    """The start (epoch ms, UTC) of the period that a ledger row's `ts` falls in."""
    if period == "hour":
        return f"(ts - ts % {HOUR_MS})"
    if period == "day":
        return f"(ts - ts % {DAY_MS})"
    if dialect == "sqlite":
        return "(cast(strftime('%s', ts / 1000, 'unixepoch', 'start of month') as integer) * 1000)"
    return "(cast(extract(epoch from date_trunc('month', to_timestamp(ts / 1000.0) at time zone 'UTC')) " \
           "as bigint) * 1000)"


def upsert_sql(source: str, period: str, dialect: str, where: str = "") -> str:
    """Fold the rows of table `source` (optionally `where`) into the rollup rows of `period`."""
    bucket = bucket_sql(period, dialect)
    sums = ", ".join(f"{expr} as {name}" for name, expr in SUMS.items())
    parts = [f"select '{period}' as period, {bucket} as bucket, '{dim}' as dim, {expr} as value, {sums} "
             f"from {source} {where} group by 2, 4" for dim, expr in DIMENSIONS.items()]
    names = ", ".join(SUMS)
    added = ", ".join(f"{name} = gw_usage_rollup.{name} + excluded.{name}" for name in SUMS)
    # `where true`: SQLite's parser needs a WHERE before ON CONFLICT in INSERT ... SELECT
    return (f"insert into gw_usage_rollup (period, bucket, dim, value, {names}) "
            f"select * from ({' union all '.join(parts)}) as batch where true order by dim, bucket, value "
            f"on conflict (period, dim, bucket, value) do update set {added}")


def fold(conn: Connection, source: str, where: str = "") -> None:
    """Add the rows of `source` to every period's rollups, in the caller's transaction."""
    dialect = conn.dialect.name
    for period in PERIODS:
        conn.execute(text(upsert_sql(source, period, dialect, where)))


def fold_cursor(cursor: object, dialect: str, source: str) -> None:
    """`fold` through a DBAPI cursor (the ledger writer's raw connection)."""
    execute = getattr(cursor, "execute")  # noqa: B009  (a DBAPI cursor: no common static type)
    for period in PERIODS:
        execute(upsert_sql(source, period, dialect))  # no parameters: psycopg sends '%' as it is


def rebuild(engine: Engine) -> None:
    """Recompute every rollup from the ledger (the migration's backfill, and after a manual ledger change)."""
    with engine.begin() as conn:
        conn.execute(text("delete from gw_usage_rollup"))
        fold(conn, "gw_usage")
