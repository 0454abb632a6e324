"""`llm-gateway login`: a device authorization grant (RFC 8628's shape) whose browser step is the gateway's own
single sign-on, so it works with every configured IdP, OIDC or SAML. The CLI asks for a code, the person opens
the verification page, signs in, and approves; the CLI's next poll gets a short-lived personal key (`sso.key_ttl_s`)
of that user in its primary team, made at that moment (no secret is ever stored)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from markupsafe import escape
from sqlalchemy import Engine, delete, insert, select, update

from llm_gateway.db.tables import device_grants
from llm_gateway.keys.accounts import Accounts
from llm_gateway.keys.model import now_ms
from llm_gateway.keys.store import NotAMember
from llm_gateway.ui.session import Sessions, base_path

from .audit import AuditLog
from .routes import client_ip

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), no look-alikes
EXPIRES_S = 600
INTERVAL_S = 2
_PAGE_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff", "x-frame-options": "DENY",
                 "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                            "frame-ancestors 'none'"}


def _hash(device_code: str) -> str:
    return hashlib.sha256(device_code.encode()).hexdigest()


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"cache-control": "no-store"})


class DeviceLogin:
    def __init__(self, engine: Engine, accounts: Accounts, sessions: Sessions, audit: AuditLog, key_ttl_s: int,
                 buttons: list[tuple[str, str]], url: Any) -> None:
        self.engine = engine
        self.accounts = accounts
        self.sessions = sessions
        self.audit = audit
        self.key_ttl_s = key_ttl_s
        self.buttons = buttons
        self.url = url  # SignIns.url: this gateway's absolute URL as browsers see it

    def add_to(self, router: APIRouter) -> None:
        router.add_api_route("/sso/device/code", self.code, methods=["POST"])
        router.add_api_route("/sso/device/token", self.token, methods=["POST"])
        router.add_api_route("/sso/device", self.page, methods=["GET"])
        router.add_api_route("/sso/device", self.approve, methods=["POST"])

    async def code(self, request: Request) -> JSONResponse:
        form = await request.form()
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        name = str(form.get("client_name") or "llm-gateway login")[:200]
        row = {"user_code": user_code, "device_hash": _hash(device_code), "user_id": None, "client_name": name,
               "expires_at": now_ms() + EXPIRES_S * 1000}
        await asyncio.to_thread(self._insert, row)
        verify = self.url(request, "/sso/device")
        pretty = f"{user_code[:4]}-{user_code[4:]}"
        return JSONResponse({"device_code": device_code, "user_code": pretty, "verification_uri": verify,
                             "verification_uri_complete": f"{verify}?user_code={pretty}",
                             "expires_in": EXPIRES_S, "interval": INTERVAL_S}, headers={"cache-control": "no-store"})

    def _insert(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(device_grants).where(device_grants.c.expires_at < now_ms()))
            conn.execute(insert(device_grants).values(**row))

    async def page(self, request: Request) -> Response:
        code = request.query_params.get("user_code", "").replace("-", "").upper()[:16]
        session = await self.sessions.read(request)
        here = f"{base_path(request)}/sso/device?user_code={quote(code)}"
        if session is None:
            links = "".join(f'<p><a href="{escape(base_path(request) + path)}?then={escape(quote(here))}">'
                            f"Sign in with {escape(label)}</a></p>" for label, path in self.buttons)
            return self._html("<h1>Sign in to approve llm-gateway login</h1>" + links)
        return self._html(
            f"<h1>Approve llm-gateway login</h1><p>Signed in as {escape(session.identity.name)}.</p>"
            f"<p>Check that your terminal shows this code, then approve to give it a personal key valid for "
            f"{self.key_ttl_s // 3600 or 1} hour(s).</p>"
            f'<form method="post" action="{escape(base_path(request))}/sso/device">'
            f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
            f'<label>Code <input name="user_code" value="{escape(code)}" required></label> '
            f'<button type="submit">Approve</button></form>')

    async def approve(self, request: Request) -> Response:
        session = await self.sessions.read(request)
        form = await request.form()
        if session is None or not Sessions.csrf_ok(session, str(form.get("csrf") or "")):
            return RedirectResponse(f"{base_path(request)}/login", status_code=303)
        if session.identity.user_id is None:
            return self._html("<h1>Not approved</h1><p>Sign in as a user (through your IdP) to get a key.</p>", 403)
        code = str(form.get("user_code") or "").replace("-", "").upper()[:16]
        done = await asyncio.to_thread(self._approve, code, session.identity.user_id)
        if not done:
            return self._html("<h1>Not approved</h1><p>That code is unknown or has expired: run "
                              "<code>llm-gateway login</code> again.</p>", 400)
        return self._html("<h1>Approved</h1><p>Return to your terminal.</p>")

    def _approve(self, code: str, user_id: str) -> bool:
        with self.engine.begin() as conn:
            changed = conn.execute(update(device_grants).where(
                device_grants.c.user_code == code, device_grants.c.expires_at >= now_ms(),
                device_grants.c.user_id.is_(None)).values(user_id=user_id))
        return bool(changed.rowcount)

    async def token(self, request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") != GRANT:
            return _oauth_error("unsupported_grant_type", f"grant_type must be {GRANT}")
        device_code = str(form.get("device_code") or "")
        result = await asyncio.to_thread(self._collect, _hash(device_code))
        if isinstance(result, JSONResponse):
            return result
        secret, key = result
        self.accounts.put_key(key)
        await self.audit.awrite("key_issued", method="device", user_id=key.user_id, client_ip=client_ip(request),
                          key_id=key.id, expires_at=key.expires_at)
        return JSONResponse({"access_token": secret, "token_type": "Bearer", "expires_in": self.key_ttl_s,
                             "key_id": key.id, "team_id": key.team_id}, headers={"cache-control": "no-store"})

    def _collect(self, device_hash: str) -> Any:
        with self.engine.begin() as conn:
            row = conn.execute(select(device_grants).where(device_grants.c.device_hash == device_hash)).first()
            if row is None:
                return _oauth_error("invalid_grant", "unknown device code")
            if row.expires_at < now_ms():
                conn.execute(delete(device_grants).where(device_grants.c.device_hash == device_hash))
                return _oauth_error("expired_token", "the code expired: run llm-gateway login again")
            if row.user_id is None:
                return _oauth_error("authorization_pending", "waiting for the browser sign-in")
            # one key per approval: whoever deletes the row makes the key
            if not conn.execute(delete(device_grants).where(device_grants.c.device_hash == device_hash)).rowcount:
                return _oauth_error("invalid_grant", "already collected")
        store = self.accounts.store
        user = store.get_user(row.user_id)
        if user is None:
            return _oauth_error("access_denied", "the user no longer exists")
        self._drop_expired_logins(user.id)
        # the user's primary team (it is one of the user's teams; the store checks that again under its lock)
        fields = {"team_id": user.team_id, "alias": f"login: {row.client_name}"[:200],
                  "expires_at": int((time.time() + self.key_ttl_s) * 1000),
                  "metadata": {"issued_by": "llm-gateway login"}}
        cap = user.max_keys if user.max_keys is not None else self.accounts.config.auth.max_keys_per_user
        try:
            created = store.create_key_within_cap(user.id, cap, fields, member=True)
        except NotAMember:  # the primary team changed at this moment
            return _oauth_error("access_denied", "your team changed while signing in: run llm-gateway login again")
        if created is None:
            return _oauth_error("access_denied", f"you already hold {cap} key(s), the most allowed")
        return created

    def _drop_expired_logins(self, user_id: str) -> None:
        """Expired login keys do not count against the user's cap: delete them."""
        now = now_ms()
        for key in self.accounts.store.list_keys(None, 10_000, user_id=user_id):
            if key.metadata.get("issued_by") == "llm-gateway login" and key.expired(now):
                self.accounts.store.delete_key(key.id)

    def _html(self, body: str, status: int = 200) -> HTMLResponse:
        page = f"<!doctype html><meta charset=utf-8><title>llm-gateway login</title>{body}"
        return HTMLResponse(page, status_code=status, headers=_PAGE_HEADERS)
