"""The dashboard's pages: overview, keys, teams, users, the request log and providers; a chart's data; CSV export.

Usage comes from the rollups (ui/data.py); what a caller may see is decided by keys/roles.py, as in the admin API.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llm_gateway.errors import GatewayError
from llm_gateway.keys.members import primary_first
from llm_gateway.keys.roles import (
    key_scope,
    may_manage_key,
    may_see_user,
    require_admin,
    require_team,
    usage_scope,
    user_keys_scope,
)
from llm_gateway.usage.rollup import DAY_MS, HOUR_MS

from . import data
from .dashboard import HEADERS, Dashboard
from .session import Session

PAGE = 50
SINCE = {"1h": HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
DAY_S = 86_400


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() and len(value) < 19 else None


def burn_down(points: list[tuple[int, float]], budget: float | None, spent: float, now_ms: int,
              start_ms: int) -> dict[str, Any]:
    """Cumulative spend by day from the period's start (at 0), and when the budget runs out at the last 7 days'
    average rate."""
    first_day = start_ms - start_ms % DAY_MS
    cumulative, total = [] if not points or points[0][0] <= first_day else [(first_day // 1000, 0.0)], 0.0
    for day, cost in points:
        total += cost
        cumulative.append((day // 1000, round(total, 6)))
    recent = [c for d, c in points if d >= now_ms - 7 * DAY_MS]
    rate = sum(recent) / 7 if recent else 0.0
    out: dict[str, Any] = {"points": cumulative, "rate_per_day": rate, "runs_out": None}
    if budget is not None:
        left = budget - spent
        if left <= 0:
            out["runs_out"] = "now"
        elif rate > 0:
            out["runs_out"] = time.strftime("%Y-%m-%d", time.gmtime(now_ms / 1000 + left / rate * DAY_S))
    return out


class Pages:
    def __init__(self, ui: Dashboard) -> None:
        self.ui = ui

    def add_to(self, router: APIRouter) -> None:
        add = router.add_api_route
        add("", self.overview, methods=["GET"])
        add("/", self.overview, methods=["GET"])
        add("/chart.json", self.chart, methods=["GET"])
        add("/keys", self.keys, methods=["GET"])
        add("/keys/{key_id}", self.key, methods=["GET"])
        add("/teams", self.teams, methods=["GET"])
        add("/teams/{team_id}", self.team, methods=["GET"])
        add("/users", self.users, methods=["GET"])
        add("/users/{user_id}", self.user, methods=["GET"])
        add("/logs", self.logs, methods=["GET"])
        add("/logs/{row_id}", self.log_detail, methods=["GET"])
        add("/providers", self.providers, methods=["GET"])
        add("/export.csv", self.export, methods=["GET"])

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def overview(self, request: Request) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        scope = usage_scope(session.identity)
        now = int(time.time() * 1000)
        month = data.month_start(now)
        today = await self._run(data.totals, self.ui.engine, scope, "day", now - now % DAY_MS)
        this_month = await self._run(data.totals, self.ui.engine, scope, "month", month)
        tops = {}
        if scope is None:
            for dim in ("team", "key", "user", "model"):
                tops[dim] = await self._run(data.top, self.ui.engine, dim, month, 5)
        return self.ui.render(request, "overview.html", session, today=today, month=this_month, tops=tops,
                              splits=data.SPLITS if scope is None else (), ranges=list(data.RANGES))

    async def chart(self, request: Request) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return JSONResponse({"error": "signed out"}, status_code=401, headers=HEADERS)
        q = request.query_params
        window = data.Window.of(q.get("range", "7d"), int(time.time() * 1000))
        out = await self._run(data.series, self.ui.engine, usage_scope(session.identity), window,
                              q.get("split") or None, q.get("metric", "cost"))
        return JSONResponse(out, headers=HEADERS)

    async def keys(self, request: Request) -> Response:
        return await self.keys_page(request)

    async def keys_page(self, request: Request, created: dict[str, Any] | None = None, error: str | None = None,
                        status: int = 200) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        after = request.query_params.get("after")
        identity = session.identity
        found = await self._run(lambda: self.ui.store.list_keys(after, PAGE + 1, **key_scope(identity)))
        more = len(found) > PAGE
        models = sorted(self.ui.catalog.routes)
        my_teams: list[str] = []
        if not (identity.is_admin or identity.is_team_admin) and identity.user_id:
            my_teams = await self._my_teams(identity.user_id)  # the teams a new key may be made in
        return self.ui.render(request, "keys.html", session, status=status, keys=found[:PAGE],
                              next_after=found[PAGE - 1].id if more else None, created=created, error=error,
                              models=models, my_teams=my_teams)

    async def _my_teams(self, user_id: str) -> list[str]:
        """The user's teams as they are now (not as at sign-in), the primary team first."""
        user = await self._run(self.ui.store.get_user, user_id)
        if user is None:
            return []
        return primary_first(user.team_id, await self._run(self.ui.store.teams_of, user_id))

    async def key(self, request: Request, key_id: str) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        key = await self._run(self.ui.store.get_key, key_id)
        if key is None or not may_manage_key(session.identity, key):
            return self.ui.render(request, "error.html", session, status=404, message="no such key")
        budget = self.ui.accounts.budgets.budgets.get(("key", key.id))
        return await self._entity(request, session, "key", key.id, key.alias or key.id, key.public(), budget,
                                  rpm=key.rpm_limit, tpm=key.tpm_limit,
                                  models=sorted(key.models) if key.models is not None else None)

    async def _entity(self, request: Request, session: Session, dim: str, value: str, title: str,
                      record: dict[str, Any], budget: Any, **extra: Any) -> Response:
        now = int(time.time() * 1000)
        start = int(budget.start * 1000) if budget is not None else data.month_start(now)
        points = await self._run(data.daily, self.ui.engine, dim, value, min(start, now - 30 * DAY_MS),
                                 now + DAY_MS)
        in_period = [(d, c) for d, c in points if d >= start - start % DAY_MS]
        spent = budget.spent if budget is not None else sum(c for _, c in in_period)
        burn = burn_down(in_period, budget.limit if budget is not None else None, spent, now, start)
        hour = await self._run(data.this_hour, self.ui.engine, dim, value, now)
        return self.ui.render(request, "entity.html", session, kind=dim, title=title, record=record,
                              budget=budget, spent=spent, burn=burn, hour=hour,
                              minutes=max(1, (now % HOUR_MS) // 60_000), **extra)

    async def teams(self, request: Request) -> Response:
        return await self.teams_page(request)

    async def teams_page(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        identity = session.identity
        if identity.is_admin:
            found = await self._run(self.ui.store.list_teams, request.query_params.get("after"), PAGE + 1)
        else:  # the user's own teams; a team admin's team among them
            mine = await self._my_teams(identity.user_id) if identity.user_id else []
            if identity.is_team_admin and identity.team_id not in mine:
                mine.append(identity.team_id or "")
            found = [t for t in [await self._run(self.ui.store.get_team, t) for t in mine[:PAGE]] if t is not None]
        return self.ui.render(request, "teams.html", session, status=status, teams=found[:PAGE],
                              next_after=found[PAGE - 1].id if len(found) > PAGE else None, error=error)

    async def team(self, request: Request, team_id: str) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        try:
            require_team(session.identity, team_id)
        except GatewayError as err:
            return self.ui.render(request, "error.html", session, status=err.status, message=err.message)
        team = await self._run(self.ui.store.get_team, team_id)
        if team is None:
            return self.ui.render(request, "error.html", session, status=404, message="no such team")
        members = await self._run(self.ui.store.list_users, None, PAGE, team_id)
        keys = await self._run(lambda: self.ui.store.list_keys(None, PAGE, team_id=team_id))
        budget = self.ui.accounts.budgets.budgets.get(("team", team_id))
        return await self._entity(request, session, "team", team_id, team.name or team_id, team.public(), budget,
                                  members=members, keys=keys)

    async def users(self, request: Request) -> Response:
        return await self.users_page(request)

    async def users_page(self, request: Request, created: dict[str, Any] | None = None, error: str | None = None,
                         status: int = 200) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        identity = session.identity
        if not (identity.is_admin or identity.is_team_admin):
            return self.ui.render(request, "error.html", session, status=403, message="this needs an admin")
        after = request.query_params.get("after")
        team = None if identity.is_admin else identity.team_id  # a team admin: its team's members
        found = await self._run(self.ui.store.list_users, after, PAGE + 1, team)
        teams = await self._run(self.ui.store.teams_of_users, [u.id for u in found[:PAGE]])
        return self.ui.render(request, "users.html", session, status=status, users=found[:PAGE],
                              teams={u.id: primary_first(u.team_id, teams.get(u.id, [])) for u in found[:PAGE]},
                              next_after=found[PAGE - 1].id if len(found) > PAGE else None, created=created,
                              error=error)

    async def user(self, request: Request, user_id: str) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        identity = session.identity
        user = await self._run(self.ui.store.get_user, user_id)
        teams = primary_first(user.team_id, await self._run(self.ui.store.teams_of, user_id)) if user else []
        if user is None or not may_see_user(identity, user_id, teams):
            return self.ui.render(request, "error.html", session, status=404, message="no such user")
        keys = await self._run(lambda: self.ui.store.list_keys(None, PAGE, **user_keys_scope(identity, user_id)))
        budget = self.ui.accounts.budgets.budgets.get(("user", user_id))
        return await self._entity(request, session, "user", user_id, user.email or user_id,
                                  {**user.public(), "teams": teams}, budget, keys=keys, teams=teams)

    def _log_filters(self, request: Request, session: Session) -> dict[str, Any]:
        q = request.query_params
        filters: dict[str, Any] = {name: q.get(name, "")[:200] for name in data.LOG_FILTERS}
        status = q.get("status", "")
        filters["status"] = status if _int(status) is not None and len(status) <= 3 else ""
        filters["start"], filters["end"] = _int(q.get("start")), _int(q.get("end"))
        since = q.get("since", "")
        if since in SINCE:
            filters["since"] = since
            filters["start"] = max(filters["start"] or 0, int(time.time() * 1000) - SINCE[since])
        scope = usage_scope(session.identity)
        if scope is not None:
            filters[f"{scope[0]}_id"] = scope[1]  # a user's or team admin's own rows, whatever the form says
        return filters

    async def logs(self, request: Request) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        filters = self._log_filters(request, session)
        before_ts, before_id = _int(request.query_params.get("before_ts")), _int(request.query_params.get("before_id"))
        before = (before_ts, before_id) if before_ts is not None and before_id is not None else None
        rows, cursor = await self._run(data.log_page, self.ui.engine, filters, before, PAGE)
        shown = {k: v for k, v in filters.items() if v not in (None, "")}
        if "since" in shown:
            shown.pop("start", None)  # the next page asks for "since" again
        return self.ui.render(request, "logs.html", session, rows=rows, cursor=cursor, filters=filters,
                              shown=shown)

    async def log_detail(self, request: Request, row_id: str) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        number = _int(row_id)
        row = await self._run(data.log_row, self.ui.engine, number) if number is not None else None
        scope = usage_scope(session.identity)
        if row is None or (scope is not None and row.get(f"{scope[0]}_id") != scope[1]):
            return self.ui.render(request, "log_detail.html", session, status=404, row=None)
        return self.ui.render(request, "log_detail.html", session, row=row)

    async def providers(self, request: Request) -> Response:
        return await self.providers_page(request)

    async def providers_page(self, request: Request, cleared: dict[str, Any] | None = None) -> Response:
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        try:
            require_admin(session.identity)
        except GatewayError as err:
            return self.ui.render(request, "error.html", session, status=err.status, message=err.message)
        status = await self.ui.routing.status()
        return self.ui.render(request, "providers.html", session, status_=status, cleared=cleared,
                              cache_on=self.ui.cache.stage is not None)

    async def export(self, request: Request) -> Response:
        """A usage view as CSV: the chart's series (`view=series`) or the groups of one dimension."""
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        q = request.query_params
        scope = usage_scope(session.identity)
        window = data.Window.of(q.get("range", "30d"), int(time.time() * 1000))
        out = io.StringIO()
        writer = csv.writer(out)
        view = "series" if q.get("view") == "series" else "groups"  # the file's name: never the query's text
        if view == "series":
            series = await self._run(data.series, self.ui.engine, scope, window, q.get("split") or None,
                                     q.get("metric", "cost"))
            writer.writerow(["time", *(_cell(s["name"]) for s in series["series"])])
            for i, x in enumerate(series["x"]):
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(x))
                writer.writerow([stamp, *(s["values"][i] for s in series["series"])])
        else:
            dim = q.get("dim", "model")
            dim = dim if dim in data.SPLITS else "model"
            rows = await self._run(data.groups, self.ui.engine, dim, window, scope)
            writer.writerow([dim, "requests", "tokens", "cost_usd", "errors", "avg_latency_ms"])
            for r in rows:
                writer.writerow([_cell(r["value"]), r["requests"], r["tokens"], round(r["cost"], 9), r["errors"],
                                 round(r["latency_ms"], 3)])
        name = f"usage-{view}.csv"
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={**HEADERS, "content-disposition": f'attachment; filename="{name}"'})


def _cell(value: str) -> str:
    """A spreadsheet must not run a cell as a formula: names a client chose start with a quote when they look
    like one."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
