"""AWS Signature Version 4, by hand (per the AWS General Reference); no SDK on the request path."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def uri_encode(text: str) -> str:
    """RFC 3986 encoding as AWS wants it: everything but unreserved characters (A-Z a-z 0-9 - _ . ~)."""
    return quote(text, safe="-_.~")


def canonical_path(path: str, double: bool = True) -> str:
    """Each segment URI-encoded, twice for every service but S3 (the path on the wire is already encoded once)."""
    segments = path.split("/")
    return "/".join(uri_encode(s) if double else quote(s, safe="-_.~%") for s in segments) or "/"


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        pairs.append((uri_encode(key), uri_encode(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


class Signer:
    """Signs requests for one service in one region; the signing key is derived once per day."""

    def __init__(self, credentials: Credentials, region: str, service: str) -> None:
        self.credentials = credentials
        self.region = region
        self.service = service
        self._key_date = ""
        self._key = b""

    def _signing_key(self, date: str) -> bytes:
        if date != self._key_date:
            key = hmac.new(f"AWS4{self.credentials.secret_access_key}".encode(), date.encode(), hashlib.sha256)
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key.digest(), part.encode(), hashlib.sha256)
            self._key, self._key_date = key.digest(), date
        return self._key

    def canonical_request(self, method: str, uri: str, query: str, headers: dict[str, str],
                          payload_hash: str) -> tuple[str, str]:
        """(canonical request, signed header names) for already-canonical `uri`."""
        names = sorted(headers)
        block = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names)
        signed = ";".join(names)
        return f"{method}\n{uri}\n{canonical_query(query)}\n{block}\n{signed}\n{payload_hash}", signed

    def authorization(self, method: str, uri: str, query: str, headers: dict[str, str], body: bytes,
                      amz_date: str, payload_hash: str | None = None) -> str:
        """The Authorization header value; `headers` are the lower-case headers to sign (host and x-amz-date
        among them)."""
        payload_hash = payload_hash or hashlib.sha256(body).hexdigest()
        request, signed = self.canonical_request(method, uri, query, headers, payload_hash)
        date = amz_date[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(date), to_sign.encode(), hashlib.sha256).hexdigest()
        return (f"{ALGORITHM} Credential={self.credentials.access_key_id}/{scope}, SignedHeaders={signed}, "
                f"Signature={signature}")
