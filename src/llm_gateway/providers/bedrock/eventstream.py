"""The AWS event-stream binary framing (application/vnd.amazon.eventstream), decoded with its CRC checks.

A message: total length (4 bytes), headers length (4), prelude CRC32 (4), headers, payload, message CRC32 (4);
integers big-endian. A header: name length (1), name, value type (1), value.
"""

from __future__ import annotations

import struct
import zlib

from llm_gateway.errors import UpstreamUnavailable

_PRELUDE = struct.Struct(">II")
_MAX_MESSAGE = 16 * 1024 * 1024
# value type -> fixed size (None: 2-byte length prefix follows)
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class CorruptStream(UpstreamUnavailable):
    code = "upstream_corrupt_stream"


def parse_headers(data: bytes) -> dict[str, object]:
    headers: dict[str, object] = {}
    at = 0
    while at < len(data):
        size = data[at]
        name = data[at + 1:at + 1 + size].decode()
        at += 1 + size
        kind = data[at]
        at += 1
        value: object
        if kind in (0, 1):
            value = kind == 0
        elif kind in (6, 7):
            (length,) = struct.unpack_from(">H", data, at)
            raw = data[at + 2:at + 2 + length]
            value = raw.decode() if kind == 7 else raw
            at += 2 + length
        elif kind in _FIXED:
            width = _FIXED[kind]
            raw = data[at:at + width]
            value = int.from_bytes(raw, "big", signed=True) if kind in (2, 3, 4, 5, 8) else raw
            at += width
        else:
            raise CorruptStream(f"event stream header {name!r} has unknown value type {kind}")
        headers[name] = value
    return headers


class EventStreamReader:
    """Cuts a byte stream into (headers, payload) messages; a partial message waits for its bytes."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[dict[str, object], bytes]]:
        buf = self._buf + data if self._buf else data
        out = []
        while len(buf) >= 12:
            total, headers_len = _PRELUDE.unpack_from(buf)
            (prelude_crc,) = struct.unpack_from(">I", buf, 8)
            if zlib.crc32(buf[:8]) != prelude_crc:
                raise CorruptStream("event stream prelude CRC mismatch")
            if total > _MAX_MESSAGE or total < 16 + headers_len:
                raise CorruptStream(f"event stream message length {total} is invalid")
            if len(buf) < total:
                break
            (message_crc,) = struct.unpack_from(">I", buf, total - 4)
            if zlib.crc32(buf[:total - 4]) != message_crc:
                raise CorruptStream("event stream message CRC mismatch")
            headers = parse_headers(buf[12:12 + headers_len])
            out.append((headers, buf[12 + headers_len:total - 4]))
            buf = buf[total:]
        self._buf = buf
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
