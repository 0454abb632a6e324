"""Dashboard sessions: a signed, HTTP-only, SameSite=Lax cookie (Secure under TLS) holding who signed in, how, and
the session's CSRF token, with an idle and an absolute expiry.

Every sign-in method ends in `Sessions.sign_in(request, identity, method)`: the master-key and user-token forms
today, an OIDC or SAML callback later (it maps the IdP's groups to roles and calls the same function). Pages only
ever see the `Session` that `Sessions.read` returns, so a new method changes no page.

The cookie is stateless (replicas that share the master key share sessions); signing out deletes it in the
browser, and a copy taken before expires at the idle limit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from llm_gateway.keys.roles import ROLES, Identity

COOKIE = "llm_gateway_ui"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


@dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    csrf: str
    method: str  # how it signed in: "master_key", "user_token", later "oidc", ...
    issued: int  # epoch seconds


def base_path(request: Request) -> str:
    """Where the dashboard is, as the browser sees it: the ASGI root path, or a proxy's X-Forwarded-Prefix."""
    prefix = request.scope.get("root_path", "") or request.headers.get("x-forwarded-prefix", "")
    prefix = prefix.rstrip("/")
    return (prefix if _PREFIX.match(prefix) else "") + "/ui"


class Sessions:
    def __init__(self, secret: bytes, idle_s: int = IDLE_S, absolute_s: int = ABSOLUTE_S) -> None:
        self.signer = URLSafeTimedSerializer(secret, salt="llm-gateway dashboard session")
        self.idle_s = idle_s
        self.absolute_s = absolute_s

    @classmethod
    def for_master_key(cls, master_key: str | None) -> Sessions:
        """Signed with a key derived from the master key (replicas agree; changing the master key signs everyone
        out), or with a random key of this process when there is none."""
        if master_key is None:
            return cls(secrets.token_bytes(32))
        return cls(hmac.new(master_key.encode(), b"llm-gateway dashboard sessions", hashlib.sha256).digest())

    def sign_in(self, request: Request, identity: Identity, method: str, response: Response) -> None:
        """Sign `identity` in on `response`: the one entry point of every sign-in method."""
        unknown = set(identity.roles) - set(ROLES)
        if unknown or not identity.roles:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        self._write(request, response, Session(identity, secrets.token_urlsafe(24), method, int(time.time())))

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self.signer.loads(raw, max_age=self.idle_s)
        except (BadSignature, SignatureExpired):
            return None
        try:
            issued = int(data["i"])
            if time.time() - issued > self.absolute_s:
                return None
            identity = Identity(str(data["s"]), frozenset(str(r) for r in data["r"]), data.get("u"), data.get("t"),
                                str(data.get("n", "")))
            return Session(identity, str(data["c"]), str(data["m"]), issued)
        except (KeyError, TypeError, ValueError):
            return None

    def refresh(self, request: Request, session: Session, response: Response) -> None:
        """Re-sign the cookie: the idle expiry counts from the latest page."""
        self._write(request, response, session)

    def sign_out(self, request: Request, response: Response) -> None:
        response.delete_cookie(COOKIE, path=base_path(request), secure=request.url.scheme == "https",
                               httponly=True, samesite="lax")

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())

    def _write(self, request: Request, response: Response, session: Session) -> None:
        ident = session.identity
        value = self.signer.dumps({"s": ident.subject, "r": sorted(ident.roles), "u": ident.user_id,
                                   "t": ident.team_id, "n": ident.name, "c": session.csrf, "m": session.method,
                                   "i": session.issued})
        remaining = max(0, min(self.idle_s, session.issued + self.absolute_s - int(time.time())))
        response.set_cookie(COOKIE, value, max_age=remaining, path=base_path(request), httponly=True,
                            samesite="lax", secure=request.url.scheme == "https")
