"""Dashboard sessions, held by the server: a signed, HTTP-only, SameSite=Lax cookie (Secure under TLS) carries a
random session id and the session's CSRF token; the database (`gw_ui_sessions`) keeps the id's SHA-256 with the user
it signed in, how, and its idle and absolute expiry.

Every sign-in method ends in `Sessions.sign_in(request, identity, method)`: the master-key and user-token forms, and
the OIDC and SAML callbacks (sso/routes.py, which map the IdP's groups to roles first). Pages only ever see the
`Session` that `Sessions.read` returns, so a new method changes no page.

`read` accepts a cookie only while its row exists and has expired neither way, and derives who it is from the user's
record as it is now (keys/roles.py), not from what was true at sign-in: a role change, a team change or an IdP group
sync applies to open sessions at their next request. Signing out, on any replica, deletes the row, so a copy of the
cookie stops working everywhere; deleting a user deletes its rows (keys/store.py). Replicas that share the master key
and the database share sessions. The session id is never logged or returned anywhere but in the cookie.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Engine, delete, insert, or_, select, update
from starlette.requests import Request
from starlette.responses import Response

from llm_gateway.db.tables import ui_sessions, users
from llm_gateway.keys.roles import MASTER, ROLES, Identity, of_sso_user, of_user
from llm_gateway.keys.rows import user_from_row

COOKIE = "llm_gateway_ui"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600
SEEN_EVERY_S = 60  # how stale `last_seen` may get: one write a minute per active session, not one per page
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


@dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    csrf: str
    method: str  # how it signed in: "master_key", "user_token", "oidc:<provider>", "saml:<provider>"
    issued: int  # epoch seconds
    sid: str = field(default="", repr=False)  # the random id the cookie carries (the database keeps its SHA-256)


def over_tls(request: Request, public_url: str | None) -> bool:
    """Whether browsers reach the gateway over https: the request came over TLS, or `sso.public_url` says so (a proxy
    that ends TLS speaks plain HTTP to the gateway). Cookies are then `Secure`."""
    return request.url.scheme == "https" or bool(public_url and public_url.lower().startswith("https://"))


def base_path(request: Request) -> str:
    """Where the dashboard is, as the browser sees it: the ASGI root path, or a proxy's X-Forwarded-Prefix."""
    prefix = request.scope.get("root_path", "") or request.headers.get("x-forwarded-prefix", "")
    prefix = prefix.rstrip("/")
    return (prefix if _PREFIX.match(prefix) else "") + "/ui"


class Sessions:
    def __init__(self, secret: bytes, engine: Engine, idle_s: int = IDLE_S, absolute_s: int = ABSOLUTE_S,
                 public_url: str | None = None) -> None:
        self.signer = URLSafeTimedSerializer(secret, salt="llm-gateway dashboard session")
        self.engine = engine
        self.public_url = public_url  # sso.public_url: an https one makes the cookie Secure behind a TLS proxy
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        # told of every sign-in and sign-out ("sign_in" | "sign_out", request, identity, method): the audit trail
        self.observers: list[Callable[[str, Request, Identity, str], None]] = []

    @classmethod
    def for_master_key(cls, master_key: str | None, engine: Engine, public_url: str | None = None) -> Sessions:
        """Signed with a key derived from the master key (replicas agree; changing the master key signs everyone
        out), or with a random key of this process when there is none."""
        if master_key is None:
            return cls(secrets.token_bytes(32), engine, public_url=public_url)
        return cls(hmac.new(master_key.encode(), b"llm-gateway dashboard sessions", hashlib.sha256).digest(), engine,
                   public_url=public_url)

    def secure(self, request: Request) -> bool:
        return over_tls(request, self.public_url)

    async def sign_in(self, request: Request, identity: Identity, method: str, response: Response) -> None:
        """Sign `identity` in on `response`: the one entry point of every sign-in method."""
        unknown = set(identity.roles) - set(ROLES)
        if unknown or not identity.roles:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        session = Session(identity, secrets.token_urlsafe(24), method, int(time.time()), secrets.token_urlsafe(32))
        await asyncio.to_thread(self._store, session)
        self._write(request, response, session)
        for observe in self.observers:
            observe("sign_in", request, identity, method)

    async def read(self, request: Request) -> Session | None:
        found = self._unsign(request)
        if found is None:
            return None
        sid, csrf, issued = found
        return await asyncio.to_thread(self._load, sid, csrf, issued)

    def refresh(self, request: Request, session: Session, response: Response) -> None:
        """Re-sign the cookie: the idle expiry counts from the latest page."""
        self._write(request, response, session)

    async def sign_out(self, request: Request, response: Response) -> None:
        """End the session on the server (every copy of its cookie, on every replica) and in the browser."""
        session = await self.read(request) if self.observers else None
        found = self._unsign(request)
        if found is not None:
            await asyncio.to_thread(self._forget, found[0])
        if session is not None:
            for observe in self.observers:
                observe("sign_out", request, session.identity, session.method)
        response.delete_cookie(COOKIE, path=base_path(request), secure=self.secure(request),
                               httponly=True, samesite="lax")

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf.encode(), str(given).encode())

    def _unsign(self, request: Request) -> tuple[str, str, int] | None:
        """(session id, CSRF token, issued) from a cookie this gateway signed within the idle limit."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self.signer.loads(raw, max_age=self.idle_s)
            return str(data["k"]), str(data["c"]), int(data["i"])
        except (BadSignature, SignatureExpired, KeyError, TypeError, ValueError):
            return None

    def _store(self, session: Session) -> None:
        """Blocking: insert the session's row, and drop the rows that expired (someone's, while signing in)."""
        now = int(time.time() * 1000)
        with self.engine.begin() as conn:
            conn.execute(delete(ui_sessions).where(or_(ui_sessions.c.expires_at <= now,
                                                       ui_sessions.c.last_seen <= now - self._idle_ms)))
            conn.execute(insert(ui_sessions).values(
                id_hash=_hash(session.sid), user_id=session.identity.user_id, method=session.method,
                created_at=session.issued * 1000, last_seen=now, expires_at=(session.issued + self.absolute_s) * 1000))

    def _load(self, sid: str, csrf: str, issued: int) -> Session | None:
        """Blocking: the session when its row is there and alive, as its user is now (one indexed read)."""
        now = int(time.time() * 1000)
        query = (select(ui_sessions.c.user_id.label("session_user"), ui_sessions.c.method,
                        ui_sessions.c.last_seen, ui_sessions.c.expires_at, *users.c)
                 .select_from(ui_sessions.outerjoin(users, users.c.id == ui_sessions.c.user_id))
                 .where(ui_sessions.c.id_hash == _hash(sid)))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            m = row._mapping
            gone = m["session_user"] is not None and m["id"] is None  # its user was deleted
            if gone or m["expires_at"] <= now or m["last_seen"] <= now - self._idle_ms:
                conn.execute(delete(ui_sessions).where(ui_sessions.c.id_hash == _hash(sid)))
                conn.commit()
                return None
            if now - m["last_seen"] >= SEEN_EVERY_S * 1000:
                conn.execute(update(ui_sessions).where(ui_sessions.c.id_hash == _hash(sid)).values(last_seen=now))
                conn.commit()
        method = str(m["method"])
        if m["session_user"] is None:
            if method != "master_key":
                return None
            identity = MASTER
        else:
            user = user_from_row(row)
            identity = of_user(user) if method == "user_token" else of_sso_user(user)
        return Session(identity, csrf, method, issued, sid)

    def _forget(self, sid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(ui_sessions).where(ui_sessions.c.id_hash == _hash(sid)))

    @property
    def _idle_ms(self) -> int:
        """The idle limit on the server: `last_seen` lags the latest page by up to SEEN_EVERY_S (the cookie's own
        max-age keeps the exact limit in the browser)."""
        return (self.idle_s + SEEN_EVERY_S) * 1000

    def _write(self, request: Request, response: Response, session: Session) -> None:
        value = self.signer.dumps({"k": session.sid, "c": session.csrf, "i": session.issued})
        remaining = max(0, min(self.idle_s, session.issued + self.absolute_s - int(time.time())))
        response.set_cookie(COOKIE, value, max_age=remaining, path=base_path(request), httponly=True,
                            samesite="lax", secure=self.secure(request))


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
