"""The dashboard's forms: sign in and out, create and revoke keys, create teams and users, clear the cache.

Each form is checked for the session's CSRF token, then handed to the admin API's own handler with the admin API's
own input model, after the same authorization rule (keys/roles.py): what the API refuses, the dashboard refuses.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from llm_gateway.api.admin.schemas import KeyInput, MyKeyInput, TeamInput, UserInput, UserTeamsInput
from llm_gateway.api.admin.wire import check_master
from llm_gateway.api.cache_admin import ClearInput
from llm_gateway.errors import GatewayError
from llm_gateway.keys.roles import MASTER, Identity, of_user, require_admin, require_key_holder, require_team
from llm_gateway.sso.audit import AuditLog

from .dashboard import HEADERS, Dashboard
from .pages import Pages
from .session import Session, base_path

PRE_COOKIE = "llm_gateway_ui_login"  # the sign-in form's CSRF token, before there is a session


def _problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))


def _fields(form: FormData, names: tuple[str, ...]) -> dict[str, Any]:
    """Non-empty text fields, numbers as numbers: the admin API's models then check them as they check JSON."""
    out: dict[str, Any] = {}
    for name in names:
        value = form.get(name)
        if not isinstance(value, str) or not value.strip():
            continue
        value = value.strip()
        if name in ("budget_usd",):
            try:
                out[name] = float(value)
            except ValueError:
                out[name] = value
        elif name in ("rpm_limit", "tpm_limit", "max_keys"):
            out[name] = int(value) if value.isascii() and value.isdigit() and len(value) < 12 else value
        else:
            out[name] = value
    models = [m for m in form.getlist("models") if isinstance(m, str) and m]
    if "models" in names and models:
        out["models"] = models
    return out


class Actions:
    def __init__(self, ui: Dashboard) -> None:
        self.ui = ui
        self.pages = Pages(ui)
        self.audit = AuditLog(ui.engine)  # refused sign-ins (accepted ones: the sessions' observer)

    def add_to(self, router: APIRouter) -> None:
        add = router.add_api_route
        add("/login", self.login_page, methods=["GET"])
        add("/login", self.login, methods=["POST"])
        add("/logout", self.logout, methods=["POST"])
        add("/keys", self.create_key, methods=["POST"])
        add("/keys/{key_id}/revoke", self.revoke_key, methods=["POST"])
        add("/teams", self.create_team, methods=["POST"])
        add("/users", self.create_user, methods=["POST"])
        add("/users/{user_id}/teams", self.set_user_teams, methods=["POST"])
        add("/cache/clear", self.clear_cache, methods=["POST"])

    async def login_page(self, request: Request) -> Response:
        if await self.ui.session(request) is not None:
            return RedirectResponse(f"{base_path(request)}/", status_code=303, headers=HEADERS)
        return await self.login_form(request)

    async def login_form(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = self.ui.render(request, "login.html", None, status=status, login_csrf=token, error=error)
        response.set_cookie(PRE_COOKIE, token, max_age=3600, path=base_path(request), httponly=True,
                            samesite="lax", secure=self.ui.sessions.secure(request))
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        given, expected = str(form.get("csrf", "")), request.cookies.get(PRE_COOKIE, "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return await self.login_form(request, "the form expired: sign in again", 403)
        secret = str(form.get("secret", "")).strip()
        identity, method = await self._identity_of(secret)
        if identity is None:
            self.audit.record_capped("sign_in_refused", outcome="refused", method="dashboard",
                                     client_ip=request.client.host if request.client else None,
                                     reason="not the master key or a user token" if secret else "no key given")
            return await self.login_form(request, "that key or token is not valid", 401)
        response = RedirectResponse(f"{base_path(request)}/", status_code=303, headers=HEADERS)
        await self.ui.sessions.sign_in(request, identity, method, response)
        response.delete_cookie(PRE_COOKIE, path=base_path(request), secure=self.ui.sessions.secure(request),
                               httponly=True, samesite="lax")
        return response

    async def _identity_of(self, secret: str) -> tuple[Identity | None, str]:
        """The master key signs in an admin; a user's self-service token signs that user in."""
        if not secret:
            return None, ""
        try:
            check_master(secret, self.ui.auth.master_key)  # the admin API's own check
            return MASTER, "master_key"
        except GatewayError:
            pass
        user = await asyncio.to_thread(self.ui.store.user_by_token, secret)
        return (of_user(user), "user_token") if user is not None else (None, "")

    async def _checked(self, request: Request) -> tuple[Session, FormData] | Response:
        """The session and the form, or the answer when there is no session or the CSRF token is wrong."""
        session = await self.ui.session(request)
        if session is None:
            return self.ui.to_login(request)
        form = await request.form()
        if not self.ui.csrf_ok(session, form, request):
            return self.ui.render(request, "error.html", session, status=403,
                                  message="the form's CSRF token is missing or wrong: reload the page")
        request.state.identity = session.identity
        return session, form

    async def logout(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        response = RedirectResponse(f"{base_path(request)}/login", status_code=303, headers=HEADERS)
        await self.ui.sessions.sign_out(request, response)
        return response

    async def create_key(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        identity = session.identity
        fields = _fields(form, ("alias", "team_id", "user_id", "models", "budget_usd", "budget_period",
                                "rpm_limit", "tpm_limit"))
        try:
            if identity.is_admin or identity.is_team_admin:
                if not identity.is_admin:
                    fields["team_id"] = identity.team_id
                require_team(identity, fields.get("team_id"))
                if fields.get("user_id"):
                    holder = str(fields["user_id"])
                    require_key_holder(identity, holder, await asyncio.to_thread(self.ui.store.teams_of, holder))
                created = await self.ui.resources.create_key(KeyInput(**fields))
            else:
                user = await asyncio.to_thread(self.ui.store.get_user, identity.user_id or "")
                if user is None:
                    raise GatewayError("your user no longer exists", status=403, type="permission_error")
                request.state.user = user
                # the team is checked against the user's teams by the API's own handler (403 not_a_member)
                fields = {name: fields[name] for name in ("alias", "team_id", "models", "budget_usd") if name in fields}
                created = await self.ui.resources.create_my_key(request, MyKeyInput(**fields))
        except ValidationError as err:
            return await self.pages.keys_page(request, error=_problem(err), status=400)
        except GatewayError as err:
            return await self.pages.keys_page(request, error=err.message, status=err.status)
        return await self.pages.keys_page(request, created=created, status=201)

    async def revoke_key(self, request: Request, key_id: str) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        session, _ = checked
        try:
            await self.ui.resources.remove_key(session.identity, key_id)
        except GatewayError as err:
            return await self.pages.keys_page(request, error=err.message, status=err.status)
        return RedirectResponse(f"{base_path(request)}/keys", status_code=303, headers=HEADERS)

    async def create_team(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        try:
            require_admin(session.identity)
            team = await self.ui.resources.create_team(
                TeamInput(**_fields(form, ("id", "name", "budget_usd", "budget_period"))))
        except ValidationError as err:
            return await self.pages.teams_page(request, error=_problem(err), status=400)
        except GatewayError as err:
            return await self.pages.teams_page(request, error=err.message, status=err.status)
        return RedirectResponse(f"{base_path(request)}/teams/{team['id']}", status_code=303, headers=HEADERS)

    async def create_user(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        try:
            require_admin(session.identity)
            user = await self.ui.resources.create_user(UserInput(**_fields(
                form, ("id", "email", "team_id", "budget_usd", "max_keys", "role"))))
        except ValidationError as err:
            return await self.pages.users_page(request, error=_problem(err), status=400)
        except GatewayError as err:
            return await self.pages.users_page(request, error=err.message, status=err.status)
        return await self.pages.users_page(request, created=user, status=201)

    async def set_user_teams(self, request: Request, user_id: str) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        teams = [t.strip() for t in str(form.get("teams") or "").split(",") if t.strip()]
        try:
            require_admin(session.identity)
            await self.ui.resources.set_user_teams(user_id, UserTeamsInput(
                teams=teams, **_fields(form, ("team_id",))))
        except ValidationError as err:
            return self.ui.render(request, "error.html", session, status=400, message=_problem(err))
        except GatewayError as err:
            return self.ui.render(request, "error.html", session, status=err.status, message=err.message)
        return RedirectResponse(f"{base_path(request)}/users/{quote(user_id)}", status_code=303, headers=HEADERS)

    async def clear_cache(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        try:
            require_admin(session.identity)
            cleared = await self.ui.cache.clear(ClearInput(**_fields(form, ("model",))))
        except ValidationError as err:
            return self.ui.render(request, "error.html", session, status=400, message=_problem(err))
        except GatewayError as err:
            return self.ui.render(request, "error.html", session, status=err.status, message=err.message)
        return await self.pages.providers_page(request, cleared=cleared)
