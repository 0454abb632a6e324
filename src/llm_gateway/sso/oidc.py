"""OIDC sign-in for people: authorization code with PKCE (S256), `state` and `nonce`, the ID token validated
against the issuer's cached JWKS (issuer, audience, expiry, nonce, signature), groups from the ID token or the
userinfo endpoint. The flow's secrets wait in a signed, HTTP-only cookie for ten minutes, bound to `state`."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlencode

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jws import JWSRegistry

from llm_gateway.settings import OidcProviderConfig

from .jwks import FetchError, Issuer, fetch_json

ALGORITHMS = ["RS256", "ES256", "RS384", "ES384", "RS512", "PS256"]


class SignInRefused(Exception):
    """Why a sign-in is refused (safe to show and to audit: never a token or secret)."""


class OidcProvider:
    def __init__(self, config: OidcProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.label = config.label or config.name
        self.issuer = Issuer(config.issuer)
        self.registry = JWSRegistry(algorithms=ALGORITHMS)

    async def start(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The IdP's authorization URL and the flow state to keep until the callback."""
        meta = await self.issuer.metadata()
        flow = {"state": generate_token(32), "nonce": generate_token(32), "verifier": generate_token(64),
                "redirect_uri": redirect_uri}
        query = {"response_type": "code", "client_id": self.config.client_id, "redirect_uri": redirect_uri,
                 "scope": " ".join(self.config.scopes), "state": flow["state"], "nonce": flow["nonce"],
                 "code_challenge": create_s256_code_challenge(flow["verifier"]), "code_challenge_method": "S256"}
        endpoint = str(meta.get("authorization_endpoint") or "")
        if not endpoint.startswith(("https://", "http://")):
            raise FetchError(f"{self.issuer.issuer}: no authorization_endpoint")
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query), flow

    async def finish(self, flow: dict[str, str], params: dict[str, str]) -> dict[str, Any]:
        """The ID token's claims (plus userinfo's groups when the token has none) for a valid callback."""
        if "error" in params:
            raise SignInRefused(f"the identity provider refused: {params['error'][:100]}")
        state = params.get("state", "")
        if not state or not hmac.compare_digest(state.encode(), flow.get("state", "").encode()):
            raise SignInRefused("the sign-in's state does not match (expired, or started elsewhere)")
        code = params.get("code")
        if not code:
            raise SignInRefused("the identity provider sent no authorization code")
        meta = await self.issuer.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": flow["redirect_uri"],
                "code_verifier": flow["verifier"], "client_id": self.config.client_id}
        if self.config.client_secret:
            form["client_secret"] = self.config.client_secret
        tokens = await fetch_json(str(meta.get("token_endpoint")), data=form,
                                  headers={"accept": "application/json"})
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise SignInRefused(f"the token endpoint gave no ID token ({str(tokens.get('error', ''))[:100]})")
        claims = await self.validate_id_token(id_token, flow["nonce"])
        if self.config.groups_claim not in claims and isinstance(tokens.get("access_token"), str):
            userinfo_url = meta.get("userinfo_endpoint")
            if isinstance(userinfo_url, str):
                info = await fetch_json(userinfo_url, headers={"authorization": f"Bearer {tokens['access_token']}"})
                if str(info.get("sub")) == str(claims.get("sub")):
                    claims = {**info, **claims}
        return claims

    async def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jws.extract_compact(id_token.encode()).protected
        except (JoseError, ValueError) as exc:
            raise SignInRefused("the ID token is not a well-formed JWT") from exc
        if header.get("alg") not in ALGORITHMS:
            raise SignInRefused(f"the ID token's algorithm {str(header.get('alg'))[:20]!r} is not accepted")
        key = await self.issuer.key(header.get("kid"))
        if key is None:
            raise SignInRefused("the ID token is signed with a key the issuer does not publish")
        try:
            token = jwt.decode(id_token, key, algorithms=ALGORITHMS, registry=self.registry)
            jwt.JWTClaimsRegistry(leeway=30, iss={"essential": True, "values": self.issuer.iss_values},
                                  aud={"essential": True, "value": self.config.client_id},
                                  exp={"essential": True}, sub={"essential": True},
                                  nonce={"essential": True, "value": nonce}).validate(token.claims)
        except ExpiredTokenError:
            raise SignInRefused("the ID token has expired") from None
        except JoseError as exc:
            raise SignInRefused(f"the ID token is not accepted ({exc.error}: {exc.description})") from None
        aud = token.claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and token.claims.get("azp") != self.config.client_id:
            raise SignInRefused("the ID token was issued to another client (azp)")
        return token.claims

    async def end_session_url(self, post_logout: str) -> str | None:
        if not self.config.end_session:
            return None
        endpoint = (await self.issuer.metadata()).get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        query = urlencode({"client_id": self.config.client_id, "post_logout_redirect_uri": post_logout})
        return endpoint + ("&" if "?" in endpoint else "?") + query
