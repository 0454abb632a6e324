"""The sign-in routes under /ui/sso/: each IdP's start and callback, SAML's SP metadata, and sign-out. A sign-in
ends in the dashboard's one entry point, `Sessions.sign_in` (ui/session.py), with the roles the groups give."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import escape

from llm_gateway.ui.session import Sessions, base_path, over_tls

from .audit import AuditLog
from .groups import GroupSync, Synced, groups_of
from .jwks import FetchError
from .oidc import OidcProvider, SignInRefused

FLOW_COOKIE = "llm_gateway_sso_flow"
FLOW_MAX_AGE_S = 600
SSO_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"}


def flow_signer(master_key: str | None) -> URLSafeTimedSerializer:
    secret = (hmac.new(master_key.encode(), b"llm-gateway sso flow", hashlib.sha256).digest()
              if master_key else secrets.token_bytes(32))
    return URLSafeTimedSerializer(secret, salt="llm-gateway sso flow")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def refusal_page(request: Request, message: str, status: int = 401) -> HTMLResponse:
    page = (f"<!doctype html><title>Sign-in refused</title><h1>Sign-in refused</h1><p role=alert>{escape(message)}"
            f"</p><p><a href=\"{escape(base_path(request))}/login\">Back to sign-in</a></p>")
    return HTMLResponse(page, status_code=status, headers=SSO_HEADERS)


class SignIns:
    """What every sign-in method shares: the flow cookie, the group sync, the session and the audit rows."""

    def __init__(self, sessions: Sessions, sync: GroupSync, audit: AuditLog, master_key: str | None,
                 public_url: str | None, on_blocked: Any) -> None:
        self.sessions = sessions
        self.sync = sync
        self.audit = audit
        self.signer = flow_signer(master_key)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.on_blocked = on_blocked

    def url(self, request: Request, path: str) -> str:
        """An absolute URL of this gateway as the browser (and the IdP) sees it."""
        root = self.public_url or str(request.base_url).rstrip("/")
        return root + base_path(request) + path

    def keep_flow(self, request: Request, response: Response, flow: dict[str, str]) -> None:
        response.set_cookie(FLOW_COOKIE, self.signer.dumps(flow), max_age=FLOW_MAX_AGE_S,
                            path=base_path(request) + "/sso", httponly=True, samesite="lax",
                            secure=over_tls(request, self.public_url))

    def read_flow(self, request: Request) -> dict[str, str] | None:
        raw = request.cookies.get(FLOW_COOKIE)
        if not raw:
            return None
        try:
            flow = self.signer.loads(raw, max_age=FLOW_MAX_AGE_S)
        except BadSignature:
            return None
        return flow if isinstance(flow, dict) else None

    async def complete(self, request: Request, *, issuer: str, subject: str, groups: list[str], method: str,
                       provider: str, email: str | None, name: str | None, then: str | None = None) -> Response:
        synced: Synced = await asyncio.to_thread(self.sync.sync, issuer=issuer, subject=subject, groups=groups,
                                                 method=method, provider=provider, email=email, name=name)
        for key in synced.blocked:
            self.on_blocked(key)
        identity = synced.identity()
        target = then if then and then.startswith(base_path(request) + "/") else base_path(request)
        response = RedirectResponse(target, status_code=303, headers=SSO_HEADERS)
        await self.sessions.sign_in(request, identity, f"{method}:{provider}", response)  # sign-out finds the IdP
        response.delete_cookie(FLOW_COOKIE, path=base_path(request) + "/sso", httponly=True, samesite="lax",
                               secure=over_tls(request, self.public_url))
        await self.audit.awrite("sign_in", method=method, provider=provider, subject=subject, user_id=identity.user_id,
                          client_ip=client_ip(request), roles=sorted(identity.roles), team_id=identity.team_id,
                                teams=list(synced.teams))
        return response

    async def refused(self, request: Request, method: str, provider: str, reason: str,
                      subject: str | None = None) -> HTMLResponse:
        await self.audit.awrite("sign_in_refused", outcome="refused", method=method, provider=provider,
                          subject=subject, client_ip=client_ip(request), reason=reason)
        return refusal_page(request, reason)


class OidcRoutes:
    def __init__(self, providers: list[OidcProvider], signins: SignIns) -> None:
        self.providers = {p.name: p for p in providers}
        self.signins = signins

    def add_to(self, router: APIRouter) -> None:
        router.add_api_route("/sso/oidc/{name}/start", self.start, methods=["GET"])
        router.add_api_route("/sso/oidc/{name}/callback", self.callback, methods=["GET"])

    async def start(self, request: Request, name: str) -> Response:
        provider = self.providers.get(name)
        if provider is None:
            return refusal_page(request, "no such sign-in method", 404)
        redirect_uri = self.signins.url(request, f"/sso/oidc/{name}/callback")
        try:
            url, flow = await provider.start(redirect_uri)
        except FetchError:
            return refusal_page(request, f"{provider.label} cannot be reached; try again shortly", 503)
        then = request.query_params.get("then")
        if then:
            flow["then"] = then[:300]
        response = RedirectResponse(url, status_code=303, headers=SSO_HEADERS)
        self.signins.keep_flow(request, response, flow)
        return response

    async def callback(self, request: Request, name: str) -> Response:
        provider = self.providers.get(name)
        if provider is None:
            return refusal_page(request, "no such sign-in method", 404)
        flow = self.signins.read_flow(request)
        if flow is None:
            return await self.signins.refused(request, "oidc", name, "the sign-in expired or was not started here")
        try:
            claims = await provider.finish(flow, dict(request.query_params))
        except SignInRefused as exc:
            return await self.signins.refused(request, "oidc", name, str(exc))
        except FetchError:
            return refusal_page(request, f"{provider.label} cannot be reached; try again shortly", 503)
        config = provider.config
        subject = str(claims.get(config.user_claim) or "")
        if not subject:
            return await self.signins.refused(request, "oidc", name, f"the ID token has no {config.user_claim!r} claim")
        email = claims.get("email")
        display = claims.get("name") or claims.get("preferred_username")
        return await self.signins.complete(
            request, issuer=provider.issuer.issuer, subject=subject, groups=groups_of(claims, config.groups_claim),
            method="oidc", provider=name, email=email if isinstance(email, str) else None,
            name=display if isinstance(display, str) else None, then=flow.get("then"))
