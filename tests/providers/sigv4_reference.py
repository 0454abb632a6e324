"""A reference SigV4 signature check for the replay server's side, written from the AWS docs' steps."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_authorization(method: str, path: str, headers: dict[str, str], signed: list[str], body: bytes,
                           access_key: str, secret: str, region: str, service: str) -> str:
    amz_date = headers["x-amz-date"]
    uri = "/".join(quote(segment, safe="-_.~") for segment in path.split("/"))  # the wire path, encoded again
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    request = "\n".join([method, uri, "", canonical_headers, ";".join(signed), hashlib.sha256(body).hexdigest()])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = _hmac(f"AWS4{secret}".encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
