"""What the dashboard's pages read: sums and series from the usage rollups (never the raw ledger), and the request
log, one keyset page at a time on the ledger's (column, ts) indexes."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from llm_gateway.db.tables import rollups, usage
from llm_gateway.usage.rollup import DAY_MS, HOUR_MS

SPLITS = ("team", "key", "user", "model", "provider", "status")
METRICS = {"cost": rollups.c.cost_usd, "requests": rollups.c.requests,
           "tokens": rollups.c.prompt_tokens + rollups.c.completion_tokens}
RANGES = {"24h": ("hour", 24), "7d": ("hour", 168), "30d": ("day", 30), "90d": ("day", 90)}
SERIES_SHOWN = 6  # split values drawn apart; the rest is "other"
LOG_FILTERS = ("key_id", "user_id", "team_id", "model", "provider")
LOG_COLUMNS = (usage.c.id, usage.c.ts, usage.c.request_id, usage.c.key_id, usage.c.user_id, usage.c.team_id,
               usage.c.model, usage.c.provider, usage.c.status, usage.c.prompt_tokens, usage.c.completion_tokens,
               usage.c.cost_usd, usage.c.latency_ms, usage.c.cache_hit)
Scope = tuple[str, str] | None  # (dimension, value) a non-admin is limited to; None: everything


def month_start(ms: int) -> int:
    t = time.gmtime(ms // 1000)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)) * 1000


def _dim(scope: Scope) -> tuple[str, str]:
    return scope if scope is not None else ("all", "")


def _totals_row(row: Any) -> dict[str, Any]:
    requests = int(row.requests or 0)
    return {"requests": requests, "tokens": int(row.tokens or 0), "cost": float(row.cost or 0.0),
            "errors": int(row.errors or 0), "latency_ms": float(row.latency or 0.0) / requests if requests else 0.0}


def _sums() -> list[Any]:
    return [func.sum(rollups.c.requests).label("requests"),
            func.sum(rollups.c.prompt_tokens + rollups.c.completion_tokens).label("tokens"),
            func.sum(rollups.c.cost_usd).label("cost"), func.sum(rollups.c.errors).label("errors"),
            func.sum(rollups.c.latency_ms).label("latency")]


def totals(engine: Engine, scope: Scope, period: str, bucket: int) -> dict[str, Any]:
    dim, value = _dim(scope)
    query = select(*_sums()).where(rollups.c.period == period, rollups.c.dim == dim, rollups.c.value == value,
                                   rollups.c.bucket == bucket)
    with engine.connect() as conn:
        return _totals_row(conn.execute(query).one())


def top(engine: Engine, dim: str, month: int, limit: int = 10) -> list[dict[str, Any]]:
    """The month's biggest spenders of `dim`: an index range scan (period, dim, bucket, cost_usd)."""
    query = (select(rollups.c.value, rollups.c.requests, rollups.c.cost_usd,
                    (rollups.c.prompt_tokens + rollups.c.completion_tokens).label("tokens"))
             .where(rollups.c.period == "month", rollups.c.dim == dim, rollups.c.bucket == month)
             .order_by(rollups.c.cost_usd.desc()).limit(limit))
    with engine.connect() as conn:
        return [{"value": r.value, "requests": int(r.requests), "cost": float(r.cost_usd), "tokens": int(r.tokens)}
                for r in conn.execute(query)]


@dataclass(frozen=True)
class Window:
    period: str
    start: int  # first bucket (epoch ms)
    end: int  # after the last bucket
    step: int

    @classmethod
    def of(cls, name: str, now_ms: int) -> Window:
        period, count = RANGES.get(name, RANGES["7d"])
        step = HOUR_MS if period == "hour" else DAY_MS
        end = now_ms - now_ms % step + step
        return cls(period, end - count * step, end, step)

    def months(self) -> list[int]:
        first, last = month_start(self.start), month_start(self.end - 1)
        out = [first]
        while out[-1] < last:
            out.append(month_start(out[-1] + 32 * DAY_MS))
        return out


def series(engine: Engine, scope: Scope, window: Window, split: str | None, metric: str) -> dict[str, Any]:
    """`{x: [epoch s], series: [{name, values}]}`: the total, or the split's top values (by the spend of the
    window's months) and the rest as "other". A non-admin's scope has no split (rollups hold one dimension)."""
    measure = METRICS.get(metric, METRICS["cost"])
    xs = list(range(window.start, window.end, window.step))
    index = {x: i for i, x in enumerate(xs)}
    in_window = and_(rollups.c.period == window.period, rollups.c.bucket >= window.start,
                     rollups.c.bucket < window.end)
    dim, value = _dim(scope)
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        total = [0.0] * len(xs)
        for bucket, amount in conn.execute(select(rollups.c.bucket, measure).where(
                in_window, rollups.c.dim == dim, rollups.c.value == value)):
            total[index[int(bucket)]] = float(amount)
        if split in SPLITS and scope is None:
            chosen = _biggest(conn, split, window.months())
            values = {v: [0.0] * len(xs) for v in chosen}
            if chosen:
                for v, bucket, amount in conn.execute(select(rollups.c.value, rollups.c.bucket, measure).where(
                        in_window, rollups.c.dim == split, rollups.c.value.in_(chosen))):
                    values[v][index[int(bucket)]] = float(amount)
            rest = [total[i] - sum(vals[i] for vals in values.values()) for i in range(len(xs))]
            out = [{"name": v or "(none)", "values": vals} for v, vals in values.items()]
            if any(abs(r) > 1e-9 for r in rest):
                out.append({"name": "other", "values": [max(0.0, r) for r in rest]})
        else:
            out = [{"name": "total", "values": total}]
    return {"x": [x // 1000 for x in xs], "series": out, "metric": metric, "period": window.period}


def _biggest(conn: Any, dim: str, months: list[int]) -> list[str]:
    """The values of `dim` that spent most over `months`: each month's top few by the cost index (no scan of the
    month's 100k keys), then the candidates' sums over all the months."""
    candidates: set[str] = set()
    for month in months:
        candidates.update(v for (v,) in conn.execute(
            select(rollups.c.value).where(rollups.c.period == "month", rollups.c.dim == dim,
                                          rollups.c.bucket == month)
            .order_by(rollups.c.cost_usd.desc()).limit(2 * SERIES_SHOWN)))
    if len(months) == 1 or not candidates:
        ranked = conn.execute(
            select(rollups.c.value).where(rollups.c.period == "month", rollups.c.dim == dim,
                                          rollups.c.bucket == months[0], rollups.c.value.in_(candidates))
            .order_by(rollups.c.cost_usd.desc(), rollups.c.value).limit(SERIES_SHOWN))
    else:
        ranked = conn.execute(
            select(rollups.c.value).where(rollups.c.period == "month", rollups.c.dim == dim,
                                          rollups.c.bucket.in_(months), rollups.c.value.in_(candidates))
            .group_by(rollups.c.value).order_by(func.sum(rollups.c.cost_usd).desc(), rollups.c.value)
            .limit(SERIES_SHOWN))
    return [v for (v,) in ranked]


def daily(engine: Engine, dim: str, value: str, start: int, end: int) -> list[tuple[int, float]]:
    """(day, spend) of one key, user or team: the budget page's burn-down."""
    query = (select(rollups.c.bucket, rollups.c.cost_usd)
             .where(rollups.c.period == "day", rollups.c.dim == dim, rollups.c.value == value,
                    rollups.c.bucket >= start, rollups.c.bucket < end).order_by(rollups.c.bucket))
    with engine.connect() as conn:
        return [(int(b), float(c)) for b, c in conn.execute(query)]


def this_hour(engine: Engine, dim: str, value: str, now_ms: int) -> dict[str, Any]:
    query = select(*_sums()).where(rollups.c.period == "hour", rollups.c.dim == dim, rollups.c.value == value,
                                   rollups.c.bucket == now_ms - now_ms % HOUR_MS)
    with engine.connect() as conn:
        return _totals_row(conn.execute(query).one())


def log_page(engine: Engine, filters: dict[str, Any], before: tuple[int, int] | None,
             limit: int = 50) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """Newest first; `before` is the (ts, id) the previous page ended with. One index range scan per page."""
    where = [getattr(usage.c, name) == filters[name] for name in LOG_FILTERS if filters.get(name)]
    if filters.get("status"):
        where.append(usage.c.status == int(filters["status"]))
    if filters.get("start") is not None:
        where.append(usage.c.ts >= int(filters["start"]))
    if filters.get("end") is not None:
        where.append(usage.c.ts < int(filters["end"]))
    if before is not None:
        where.append(or_(usage.c.ts < before[0], and_(usage.c.ts == before[0], usage.c.id < before[1])))
    query = (select(*LOG_COLUMNS).where(*where).order_by(usage.c.ts.desc(), usage.c.id.desc()).limit(limit + 1))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1]["ts"], rows[-1]["id"]) if more and rows else None)


def log_row(engine: Engine, row_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(usage).where(usage.c.id == row_id)).first()
    return dict(row._mapping) if row is not None else None


def groups(engine: Engine, dim: str, window: Window, scope: Scope) -> list[dict[str, Any]]:
    """Usage of every value of `dim` over the window (CSV export); a scoped caller gets its own row only."""
    where = [rollups.c.period == window.period, rollups.c.bucket >= window.start, rollups.c.bucket < window.end]
    if scope is not None:
        dim, value = scope
        where.append(rollups.c.value == value)
    query = (select(rollups.c.value, *_sums()).where(rollups.c.dim == dim, *where).group_by(rollups.c.value)
             .order_by(func.sum(rollups.c.cost_usd).desc()))
    with engine.connect() as conn:
        return [{"value": r.value, **_totals_row(r)} for r in conn.execute(query)]
