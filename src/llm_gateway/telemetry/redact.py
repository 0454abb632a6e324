"""Secret scrubbing for anything telemetry writes out: logged bodies and captured prompt/completion content.

Two layers, because either alone misses cases: every known secret (provider keys, master key, the client's
own credential) is replaced wherever it occurs in the serialised bytes, and anything shaped like an API key
or sitting under a secret-sounding field name is replaced too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

REDACTED = "[REDACTED]"
_REDACTED_B = REDACTED.encode()
_MIN_SECRET = 6  # shorter "secrets" would redact ordinary words
# Field names whose string values are credentials; "max_tokens" and friends are not ("token" alone is).
_SECRET_FIELD = re.compile(
    rb'("(?:[A-Za-z_-]*(?:api[_-]?key|secret|password|passwd|authorization|access[_-]?token|refresh[_-]?token|'
    rb'bearer|credential|private[_-]?key)|token|key)"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_KEY_SHAPED = re.compile(rb"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}|\bBearer\s+[A-Za-z0-9._~+/=\-]{8,}|\bAKIA[0-9A-Z]{16}\b")


def client_credentials(headers: dict[str, str]) -> list[str]:
    """The secrets a client sent with its request (Authorization token, x-api-key, api-key)."""
    out = []
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        out.append(token.strip() if token else scheme)
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value:
            out.append(value)
    return out


class Redactor:
    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s.encode() for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def scrub(self, data: bytes, extra: Iterable[str] = ()) -> bytes:
        """`data` (JSON or text) with every known or key-shaped secret replaced."""
        for secret in [*self.secrets, *(e.encode() for e in extra if len(e) >= _MIN_SECRET)]:
            if secret in data:
                data = data.replace(secret, _REDACTED_B)
        data = _SECRET_FIELD.sub(rb'\1"' + _REDACTED_B + rb'"', data)
        return _KEY_SHAPED.sub(_REDACTED_B, data)

    def scrub_json(self, value: Any, extra: Iterable[str] = ()) -> str:
        """`value` serialised to JSON and scrubbed."""
        return self.scrub(orjson.dumps(value, default=str), extra).decode("utf-8", "replace")

    def scrub_text(self, text: str, extra: Iterable[str] = ()) -> str:
        return self.scrub(text.encode("utf-8", "replace"), extra).decode("utf-8", "replace")
