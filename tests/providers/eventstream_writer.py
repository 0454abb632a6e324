"""Writes AWS event-stream messages (the test side's own encoder, from the framing in the AWS docs)."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson


def _header(name: str, value: str) -> bytes:
    raw = value.encode()
    return bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw


def message(headers: dict[str, str], payload: bytes) -> bytes:
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def encode(events: list[dict[str, Any]]) -> bytes:
    """`[{"event": "messageStart", "payload": {...}}, {"exception": "throttlingException", "payload": {...}}]`"""
    out = []
    for item in events:
        payload = orjson.dumps(item["payload"])
        if "exception" in item:
            headers = {":message-type": "exception", ":exception-type": item["exception"],
                       ":content-type": "application/json"}
        else:
            headers = {":event-type": item["event"], ":content-type": "application/json", ":message-type": "event"}
        out.append(message(headers, payload))
    return b"".join(out)
