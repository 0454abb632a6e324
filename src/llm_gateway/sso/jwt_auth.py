"""IdP access tokens as API credentials (`auth.jwt`): `Authorization: Bearer <JWT>` instead of a virtual key.

The first use of a token validates it (signature through the issuer's cached JWKS, RS256/ES256 only, issuer,
audience, expiry, required claims) and syncs its subject and groups to a user and its teams (sso/groups.py). The
result is kept by the token's text until the token expires, so every later call is one dict lookup and a clock
read: no network, no database, no signature check. Refused tokens are kept too (briefly), so a client retrying a
bad token costs a lookup and writes one audit row, not one per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable

import orjson
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jws import JWSRegistry

from llm_gateway.errors import ServiceUnavailable, Unauthorized
from llm_gateway.keys.model import KeyRecord
from llm_gateway.settings import JwtIssuerConfig

from .audit import AuditLog
from .groups import GroupSync, groups_of
from .jwks import FetchError, Issuer

log = logging.getLogger("llm_gateway.sso")
_MAX_CACHED = 10_000  # tokens of 1-2.5 KB (Entra ID's are the largest): at most ~25 MB
_REFUSED_S = 60.0
_AUDIT_PER_S = 20
CODE = "invalid_token"


class TokenRefused(Exception):
    """Why a token is not accepted (the message is safe to show: it never contains the token)."""


def _segment(part: str) -> dict[str, object]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise TokenRefused("the token is not a well-formed JWT") from exc
    if not isinstance(value, dict):
        raise TokenRefused("the token is not a well-formed JWT")
    return value


def looks_like_jwt(secret: str) -> bool:
    """Virtual keys (sk-gw-…, URL-safe base64) never hold a dot; a compact JWS has exactly two."""
    return secret.count(".") == 2


class TrustedIssuer:
    def __init__(self, config: JwtIssuerConfig) -> None:
        self.config = config
        self.keys = Issuer(config.issuer, config.jwks_url)
        self.algorithms = [a for a in config.algorithms if a in ("RS256", "ES256", "RS384", "ES384", "RS512",
                                                                 "PS256", "ES512")]
        self.registry = JWSRegistry(algorithms=self.algorithms)
        audience = config.audience
        claims: dict[str, dict[str, object]] = {name: {"essential": True} for name in config.required_claims}
        claims["iss"] = {"essential": True, "values": self.keys.iss_values}
        claims["exp"] = {"essential": True}
        claims[config.user_claim] = {"essential": True}
        if audience is not None:
            claims["aud"] = {"essential": True, "values": [audience] if isinstance(audience, str) else audience}
        self.claims = claims
        self.leeway = config.leeway_s

    async def verify(self, token: str, header: dict[str, object]) -> dict[str, object]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenRefused(f"the token's algorithm {str(alg)[:20]!r} is not accepted "
                               f"(accepted: {', '.join(self.algorithms)})")
        kid = header.get("kid")
        try:
            key = await self.keys.key(kid if isinstance(kid, str) else None)
        except FetchError as exc:
            log.warning("jwks unavailable: %s", exc)
            raise ServiceUnavailable("the identity provider's signing keys cannot be read; try again shortly",
                                     code="jwks_unavailable") from None
        if key is None:
            raise TokenRefused("the token is signed with a key the issuer does not publish")
        try:
            decoded = jwt.decode(token, key, algorithms=self.algorithms, registry=self.registry)
            registry = jwt.JWTClaimsRegistry(leeway=self.leeway, **self.claims)  # type: ignore[arg-type]
            registry.validate(decoded.claims)
        except ExpiredTokenError:
            raise TokenRefused("the token has expired") from None
        except BadSignatureError:
            raise TokenRefused("the token's signature does not verify") from None
        except MissingClaimError as exc:
            raise TokenRefused(f"the token lacks required claims: {exc.description}") from None
        except InvalidClaimError as exc:
            raise TokenRefused(f"the token's {exc.claim if hasattr(exc, 'claim') else 'claim'} claim is not "
                               f"accepted ({exc.description})") from None
        except JoseError as exc:
            raise TokenRefused(f"the token is not accepted ({exc.error})") from None
        return decoded.claims


class JwtAuth:
    def __init__(self, issuers: list[JwtIssuerConfig], sync: GroupSync, audit: AuditLog,
                 on_blocked: Callable[[KeyRecord], None], clock: Callable[[], float] = time.time) -> None:
        self.issuers = {i.issuer.rstrip("/"): TrustedIssuer(i) for i in issuers}
        self.sync = sync
        self.audit = audit
        self.on_blocked = on_blocked
        self.clock = clock
        self._valid: dict[str, tuple[KeyRecord, float]] = {}
        # by the token's SHA-256, not its text: anyone may send made-up tokens up to the head limit (64 KB each)
        self._refused: dict[bytes, tuple[str, float]] = {}
        self._checking: dict[str, asyncio.Future[tuple[KeyRecord, float]]] = {}  # one check per new token
        self._audit_second, self._audit_count, self._suppressed = 0, 0, 0

    async def identify(self, token: str) -> KeyRecord:
        """The key record a valid token acts as; Unauthorized (invalid_token) otherwise."""
        hit = self._valid.get(token)
        now = self.clock()
        if hit is not None and now < hit[1]:
            return hit[0]
        digest = hashlib.sha256(token.encode()).digest()
        refused = self._refused.get(digest)
        if refused is not None and now < refused[1]:
            raise Unauthorized(refused[0], code=CODE)
        pending = self._checking.get(token)
        if pending is None:  # concurrent first uses of a token share one validation and one user sync
            pending = asyncio.ensure_future(self._validate(token))
            self._checking[token] = pending
            pending.add_done_callback(lambda _: self._checking.pop(token, None))
        try:
            record, expires = await asyncio.shield(pending)
        except TokenRefused as exc:
            self._remember_refusal(digest, str(exc), now)
            raise Unauthorized(str(exc), code=CODE) from None
        if len(self._valid) >= _MAX_CACHED:
            self._valid = {t: v for t, v in self._valid.items() if v[1] > now}
            if len(self._valid) >= _MAX_CACHED:
                self._valid.clear()
        self._valid[token] = (record, expires)
        return record

    def _remember_refusal(self, digest: bytes, reason: str, now: float) -> None:
        if len(self._refused) >= _MAX_CACHED:
            self._refused = {t: v for t, v in self._refused.items() if v[1] > now}
            if len(self._refused) >= _MAX_CACHED:
                self._refused.clear()
        self._refused[digest] = (reason, now + _REFUSED_S)
        # at most _AUDIT_PER_S rows a second: a flood of made-up tokens must not become a flood of writes
        second = int(now)
        if second != self._audit_second:
            if self._suppressed:
                log.warning("%d refused token(s) not written to the audit table (rate cap)", self._suppressed)
            self._audit_second, self._audit_count, self._suppressed = second, 0, 0
        if self._audit_count >= _AUDIT_PER_S:
            self._suppressed += 1
            return
        self._audit_count += 1
        self.audit.record("token_refused", outcome="refused", method="jwt", reason=reason)

    async def _validate(self, token: str) -> tuple[KeyRecord, float]:
        head, body, _ = token.split(".")
        header, unverified = _segment(head), _segment(body)
        if str(header.get("alg", "")).lower() == "none":
            raise TokenRefused("unsigned tokens (alg 'none') are not accepted")
        issuer = self.issuers.get(str(unverified.get("iss", "")).rstrip("/"))
        if issuer is None:
            raise TokenRefused("the token's issuer is not trusted")
        claims = await issuer.verify(token, header)
        config = issuer.config
        subject = str(claims[config.user_claim])
        groups = groups_of(claims, config.groups_claim)
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        try:
            synced = await asyncio.to_thread(self.sync.sync, issuer=issuer.keys.issuer, subject=subject,
                                             groups=groups, method="jwt", provider=issuer.keys.issuer,
                                             email=email)  # type: ignore[arg-type]
        except Exception as exc:  # the database: a valid token is not refused for it, but cannot be served
            log.warning("sso user sync failed (%s)", type(exc).__name__)
            raise ServiceUnavailable("the user store is unavailable; try again shortly") from None
        for key in synced.blocked:
            self.on_blocked(key)
        user = synced.user
        # once per token: later calls hit the cache
        self.audit.record("sign_in", method="jwt", provider=issuer.keys.issuer, subject=subject, user_id=user.id,
                          team_id=user.team_id, teams=list(synced.teams))
        # A token acts for its user in the user's primary team (billing, budgets, the team's permissions); the
        # user's other teams matter for the keys it makes, each of which names its own team.
        record = KeyRecord(id="jwt_" + user.id.removeprefix("sso_"), key_hash="", key_prefix="jwt",
                           alias=f"jwt:{subject}"[:200], user_id=user.id, team_id=user.team_id,
                           metadata={"auth": "jwt", "issuer": issuer.keys.issuer})
        exp = claims.get("exp")
        expires = float(exp) if isinstance(exp, (int, float)) else self.clock() + 300
        return record, expires
