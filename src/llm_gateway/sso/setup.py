"""Builds single sign-on from the config (imported only when `sso` or `auth.jwt` is configured: the [sso] extra)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import escape

from llm_gateway.keys.accounts import Accounts
from llm_gateway.settings import GatewayConfig
from llm_gateway.ui.session import Sessions, base_path

from .audit import AuditLog
from .device import DeviceLogin
from .groups import GroupSync
from .jwt_auth import JwtAuth
from .oidc import OidcProvider
from .routes import OidcRoutes, SignIns, client_ip

log = logging.getLogger("llm_gateway.sso")


@dataclass
class Sso:
    router: APIRouter
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (label, start path below /ui)
    jwt: JwtAuth | None = None


class SignOut:
    def __init__(self, sessions: Sessions, audit: AuditLog, oidc: dict[str, OidcProvider]) -> None:
        self.sessions = sessions
        self.audit = audit
        self.oidc = oidc

    async def __call__(self, request: Request) -> Response:
        session = await self.sessions.read(request)
        form = await request.form()
        if session is None or not Sessions.csrf_ok(session, str(form.get("csrf") or "")):
            return RedirectResponse(base_path(request) + "/login", status_code=303)
        login = base_path(request) + "/login"
        method, _, name = session.method.partition(":")
        provider = self.oidc.get(name) if method == "oidc" else None
        end = await provider.end_session_url(str(request.base_url).rstrip("/") + login) if provider else None
        response: Response = RedirectResponse(login, status_code=303)
        if end is not None and provider is not None:
            # A page, not a redirect: the dashboard's CSP (form-action 'self') stops a form's redirect elsewhere.
            page = (f'<!doctype html><meta http-equiv="refresh" content="0;url={escape(end)}"><title>Signed out'
                    f'</title><p>Signed out. <a href="{escape(end)}">Sign out of {escape(provider.label)}</a></p>')
            response = HTMLResponse(page, headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})
        await self.sessions.sign_out(request, response)
        await self.audit.awrite("sign_out", method=method, provider=name, subject=session.identity.subject,
                          user_id=session.identity.user_id, client_ip=client_ip(request))
        return response


def build_sso(config: GatewayConfig, accounts: Accounts) -> Sso:
    if config.auth.master_key is None:
        log.warning("sso / auth.jwt are configured but auth.master_key is not: the gateway is open, so API calls "
                    "need no credential and the dashboard's sessions are signed with a per-process key")
    audit = AuditLog(accounts.engine)
    sync = GroupSync(config.sso.group_mapping, accounts.store, audit)
    router = APIRouter(prefix="/ui", include_in_schema=False)
    sso = Sso(router)
    if config.auth.jwt:
        sso.jwt = JwtAuth(config.auth.jwt, sync, audit, accounts.put_key)
        accounts.auth_stage.jwt = sso.jwt.identify
    sessions = Sessions.for_master_key(config.auth.master_key, accounts.engine, config.sso.public_url)
    signins = SignIns(sessions, sync, audit, config.auth.master_key, config.sso.public_url, accounts.put_key)
    oidc = [OidcProvider(p) for p in config.sso.oidc]
    OidcRoutes(oidc, signins).add_to(router)
    sso.buttons.extend((p.label, f"/sso/oidc/{p.name}/start") for p in oidc)
    if config.sso.saml:
        from .saml import SamlRoutes, saml_providers  # noqa: PLC0415  (pysaml2 and xmlsec only when SAML is on)
        saml = saml_providers(config.sso.saml)
        SamlRoutes(saml, signins, accounts.engine).add_to(router)
        sso.buttons.extend((p.label, f"/sso/saml/{p.name}/start") for p in saml)
    DeviceLogin(accounts.engine, accounts, sessions, audit, config.sso.key_ttl_s, sso.buttons,
                signins.url).add_to(router)
    router.add_api_route("/sso/logout", SignOut(sessions, audit, {p.name: p for p in oidc}), methods=["POST"])
    return sso
