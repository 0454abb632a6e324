"""Gemini's thought signatures on function calls, carried through OpenAI clients to the next turn.

Gemini returns a `thoughtSignature` beside each function call it makes and wants it back when the call is
replayed in the history. OpenAI clients echo a tool call's `id` and may drop unknown fields, so the signature
rides in the id (`<id>__thought__<signature>`); Google's own OpenAI-compatible endpoint puts it in
`extra_content.google.thought_signature`, which is read too.
"""

from __future__ import annotations

from typing import Any

SEPARATOR = "__thought__"


def call_id_with_signature(call_id: str, signature: Any) -> str:
    return f"{call_id}{SEPARATOR}{signature}" if isinstance(signature, str) and signature else call_id


def thought_signature_of(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    if isinstance(extra, dict):
        google = extra.get("google")
        if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
            return str(google["thought_signature"])
    call_id = call.get("id")
    if isinstance(call_id, str) and SEPARATOR in call_id:
        return call_id.split(SEPARATOR, 1)[1] or None
    return None
