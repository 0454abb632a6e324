"""The dashboard at /ui: its router, page rendering (escaped templates, strict CSP), sessions and static files.

Pages (ui/pages.py) and form actions (ui/actions.py) call the admin API's own handlers and authorization rules
(api/admin/resources.py, keys/roles.py): the dashboard is a second face of the admin API, not a second copy.
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from importlib import resources as package_files
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from llm_gateway.api.admin.resources import ResourcesApi
from llm_gateway.api.admin.wire import Auth
from llm_gateway.api.cache_admin import CacheAdminApi
from llm_gateway.api.routing import RoutingApi
from llm_gateway.keys.accounts import Accounts
from llm_gateway.routing.catalog import Catalog

from .session import CSRF_FIELD, CSRF_HEADER, Session, Sessions, base_path

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
           "x-frame-options": "DENY", "cache-control": "no-store"}


def _fmt_usd(value: Any) -> str:
    amount = float(value or 0.0)
    return f"${amount:,.2f}" if abs(amount) >= 1 else f"${amount:,.4f}"


def _fmt_int(value: Any) -> str:
    return f"{int(value or 0):,}"


def _fmt_time(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


class Static:
    """The vendored files (htmx, uPlot, the dashboard's own CSS and JS), read once from the package: the
    dashboard runs from a read-only file system and fetches nothing from a CDN."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        root = package_files.files("llm_gateway.ui").joinpath("static")
        for entry in root.iterdir():
            if entry.is_file() and not entry.name.endswith(".txt"):
                body = entry.read_bytes()
                kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                self.files[entry.name] = (body, kind, hashlib.sha256(body).hexdigest()[:16])

    def version(self, name: str) -> str:
        return self.files[name][2]

    async def serve(self, request: Request, name: str) -> Response:
        found = self.files.get(name)
        if found is None:
            return Response(status_code=404)
        body, kind, etag = found
        headers = {"etag": f'"{etag}"', "cache-control": "public, max-age=86400",
                   "x-content-type-options": "nosniff"}
        if request.headers.get("if-none-match") == f'"{etag}"':
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=kind, headers=headers)


class Dashboard:
    def __init__(self, accounts: Accounts, catalog: Catalog, resources: ResourcesApi, routing: RoutingApi,
                 cache: CacheAdminApi, auth: Auth) -> None:
        self.accounts = accounts
        self.store = accounts.store
        self.engine = accounts.engine
        self.catalog = catalog
        self.resources = resources
        self.routing = routing
        self.cache = cache
        self.auth = auth
        self.sessions = Sessions.for_master_key(auth.master_key, accounts.engine, accounts.config.sso.public_url)
        self.static = Static()
        self.templates = Environment(loader=PackageLoader("llm_gateway.ui", "templates"),
                                     autoescape=select_autoescape(default=True), auto_reload=False)
        self.templates.filters.update(usd=_fmt_usd, num=_fmt_int, datetime=_fmt_time)
        self.templates.globals["asset"] = lambda name: f"{name}?v={self.static.version(name)}"

    async def session(self, request: Request) -> Session | None:
        return await self.sessions.read(request)

    def to_login(self, request: Request) -> Response:
        return RedirectResponse(f"{base_path(request)}/login", status_code=303, headers=HEADERS)

    def csrf_ok(self, session: Session, form: Any, request: Request) -> bool:
        return Sessions.csrf_ok(session, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))

    def render(self, request: Request, template: str, session: Session | None, status: int = 200,
               **context: Any) -> HTMLResponse:
        base = base_path(request)
        page = self.templates.get_template(template).render(
            base=base, session=session, identity=session.identity if session else None,
            csrf=session.csrf if session else "", path=request.url.path, **context)
        response = HTMLResponse(page, status_code=status, headers=HEADERS)
        if session is not None:
            self.sessions.refresh(request, session, response)
        return response
