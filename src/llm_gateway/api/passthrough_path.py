"""What of a client's `/v1/*` path may be forwarded to the pass-through upstream, with the provider's key."""

from __future__ import annotations

import re

from llm_gateway.errors import BadRequest

# An encoded slash, backslash or NUL (also encoded again, `%252f`): a server or proxy further on may decode it
# and see another path than the one checked here.
_ENCODED_SEPARATOR = re.compile(r"%(?:25)*(?:2f|5c|00)", re.IGNORECASE)
# A segment of dots only, plain or encoded: `.`, `..`, `.%2e`, `%2E%2e`, `%252e%252e`.
_DOT_SEGMENT = re.compile(r"(?:\.|%(?:25)*2e)+", re.IGNORECASE)


def passthrough_endpoint(path: str) -> str:
    """The path below `/v1/` to forward, with empty segments dropped; a 400 for one that could climb out.

    `/v1/../admin` or its encoded forms would reach another path of the upstream than any `/v1/...`
    with the gateway's provider key on it: refused, never resolved.
    """
    rest = path[len("/v1/"):]
    segments = [s for s in rest.split("/") if s]
    if "\\" in rest or _ENCODED_SEPARATOR.search(rest) or any(_DOT_SEGMENT.fullmatch(s) for s in segments):
        raise BadRequest("the path may not contain '.' or '..' segments, encoded slashes or backslashes",
                         code="invalid_path")
    return "/".join(segments) + ("/" if rest.endswith("/") and segments else "")
