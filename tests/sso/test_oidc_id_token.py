"""ID token checks of the OIDC sign-in against a JWKS on loopback: signature, issuer, audience (the client id),
expiry, nonce, azp, and unsigned or HMAC tokens, each refused with its reason."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.sso.idp import JwksServer, token

from llm_gateway.settings import OidcProviderConfig
from llm_gateway.sso.oidc import OidcProvider, SignInRefused


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    server = JwksServer().start()
    server.add_rsa("k1")
    yield server
    server.stop()


def provider(idp: JwksServer) -> OidcProvider:
    return OidcProvider(OidcProviderConfig(name="corp", issuer=idp.url, client_id="gw-client"))


def claims(idp: JwksServer, **changes: Any) -> dict[str, Any]:
    return {"iss": idp.url, "aud": "gw-client", "sub": "ann", "nonce": "n-1", **changes}


async def test_a_good_id_token_passes(idp: JwksServer) -> None:
    got = await provider(idp).validate_id_token(token(idp.keys[0], **claims(idp)), "n-1")
    assert got["sub"] == "ann"


@pytest.mark.parametrize(("changes", "reason"), [
    ({"aud": "another-client"}, "aud"),
    ({"iss": "https://evil.example.com"}, "iss"),
    ({"exp": int(time.time()) - 120}, "expired"),
    ({"nonce": "replayed"}, "nonce"),
    ({"aud": ["gw-client", "other"], "azp": "other"}, "azp"),
])
async def test_bad_id_tokens_are_refused(idp: JwksServer, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(SignInRefused, match=reason):
        await provider(idp).validate_id_token(token(idp.keys[0], **claims(idp, **changes)), "n-1")


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_unsigned_hmac_and_tampered_tokens_are_refused(idp: JwksServer) -> None:
    body = claims(idp, exp=int(time.time()) + 300, iat=int(time.time()))
    with pytest.raises(SignInRefused, match="algorithm 'none'"):
        await provider(idp).validate_id_token(f"{b64({'alg': 'none'})}.{b64(body)}.", "n-1")
    with pytest.raises(SignInRefused, match="algorithm 'HS256'"):
        await provider(idp).validate_id_token(f"{b64({'alg': 'HS256', 'kid': 'k1'})}.{b64(body)}.AAAA", "n-1")
    head, _, sig = token(idp.keys[0], **body).split(".")
    with pytest.raises(SignInRefused, match="not accepted"):
        await provider(idp).validate_id_token(f"{head}.{b64({**body, 'sub': 'root'})}.{sig}", "n-1")


async def test_keys_are_reread_hourly_and_a_withdrawn_key_stops_validating(idp: JwksServer,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_gateway.sso import jwks

    withdrawn = idp.add_rsa("old")
    oidc = provider(idp)
    good = token(withdrawn, **claims(idp))
    assert (await oidc.validate_id_token(good, "n-1"))["sub"] == "ann"
    idp.keys.remove(withdrawn)
    assert (await oidc.validate_id_token(good, "n-1"))["sub"] == "ann"  # within the hour: the cached key
    monkeypatch.setattr(jwks, "MAX_AGE_S", 0.0)
    with pytest.raises(SignInRefused, match="does not publish"):
        await oidc.validate_id_token(good, "n-1")


async def test_an_issuer_with_a_trailing_slash_is_accepted(idp: JwksServer) -> None:
    """Auth0's ID tokens name `https://tenant.auth0.com/`; configured with or without the slash, they pass."""
    for configured in (idp.url, idp.url + "/"):
        oidc = OidcProvider(OidcProviderConfig(name="corp", issuer=configured, client_id="gw-client"))
        for iss in (idp.url + "/", idp.url):
            got = await oidc.validate_id_token(token(idp.keys[0], **claims(idp, iss=iss)), "n-1")
            assert got["sub"] == "ann"
