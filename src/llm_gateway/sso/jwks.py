"""Issuers' signing keys: discovery documents and JWKS, fetched once, kept, and re-read when a token names a key
id we do not know (the IdP rotated its keys), at most once per `REFRESH_MIN_S` (2 s) so bad tokens cannot make us hammer
the IdP."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

log = logging.getLogger("llm_gateway.sso")
REFRESH_MIN_S = 2.0
MAX_AGE_S = 3600.0  # keys are re-read at least hourly, so a key the IdP withdrew stops validating new tokens
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class FetchError(Exception):
    """The IdP could not be reached or answered something that is not the expected JSON."""


async def fetch_json(url: str, *, data: dict[str, str] | None = None,
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET (or POST a form, with `data`) and parse a JSON object; FetchError otherwise."""
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            method = session.post(url, data=data, headers=headers) if data is not None else session.get(
                url, headers=headers)
            async with method as response:
                body = await response.json(content_type=None)
                if response.status >= 500:
                    raise FetchError(f"{url} answered {response.status}")
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise FetchError(f"{url}: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise FetchError(f"{url} did not answer a JSON object")
    return body


class Issuer:
    """One issuer's discovery document (lazily) and its signing keys by key id."""

    def __init__(self, issuer: str, jwks_url: str | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        # what `iss` may say: IdPs write their issuer with a trailing slash (Auth0) or without, and configs either
        self.iss_values = [self.issuer, self.issuer + "/"]
        self.jwks_url = jwks_url
        self.discovery: dict[str, Any] | None = None
        self.keys: dict[str | None, Key] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        if self.discovery is None:
            self.discovery = await fetch_json(self.issuer + "/.well-known/openid-configuration")
        return self.discovery

    async def key(self, kid: str | None) -> Key | None:
        """The key a token names; re-reads the JWKS once when the id is new (rotation)."""
        found = self._pick(kid)
        if found is not None and time.monotonic() - self._fetched < MAX_AGE_S:
            return found
        async with self._lock:
            if self._fetched and time.monotonic() - self._fetched >= MAX_AGE_S:
                try:
                    await self._load()
                except FetchError as exc:  # keep the keys we have; try again in 30 s
                    log.warning("jwks refresh of %s failed (%s); keeping the cached keys", self.issuer, exc)
                    self._fetched = time.monotonic() - MAX_AGE_S + 30
            found = self._pick(kid)
            if found is None and (not self._fetched or time.monotonic() - self._fetched >= REFRESH_MIN_S):
                await self._load()
                found = self._pick(kid)
        return found

    def _pick(self, kid: str | None) -> Key | None:
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        return self.keys.get(kid)

    async def _load(self) -> None:
        self._fetched = time.monotonic()
        url = self.jwks_url
        if url is None:
            url = str((await self.metadata()).get("jwks_uri") or "")
            if not url:
                raise FetchError(f"{self.issuer}: the discovery document has no jwks_uri")
        body = await fetch_json(url)
        keys: dict[str | None, Key] = {}
        for item in body.get("keys") or []:
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            try:
                key = JWKRegistry.import_key(item)
            except (JoseError, ValueError, TypeError):
                continue  # an unusable or unknown key type: the others still work
            keys[item.get("kid")] = key
        self.keys = keys
        log.info("jwks of %s: %d signing key(s)", self.issuer, len(keys))
