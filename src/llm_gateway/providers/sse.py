"""Server-sent events: splitting a byte stream into events, and framing events for the client."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

DONE = b"data: [DONE]\n\n"


class EventSplitter:
    """Cuts a byte stream into complete SSE events; a partial event waits for the rest of its bytes."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._tail + data if self._tail else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
            if buf.endswith(b"\r"):  # the \n of a \r\n pair may still be on its way
                self._tail = buf
                return []
        events = buf.split(b"\n\n")
        self._tail = events.pop()
        return events

    def rest(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail.strip()


class EventTranslator:
    """Translates an SSE stream one complete event at a time (`_event`); `finish` also closes it (`_close`)."""

    def __init__(self) -> None:
        self._split = EventSplitter()

    def feed(self, data: bytes) -> bytes:
        events = self._split.feed(data)
        return b"".join([self._event(e) for e in events]) if events else b""

    def finish(self) -> bytes:
        rest = self._split.rest()
        out = self._event(rest) if rest else b""
        return out + self._close()

    def _event(self, event: bytes) -> bytes:
        raise NotImplementedError

    def _close(self) -> bytes:
        """The events that end the output when the stream did not end it itself (idempotent)."""
        raise NotImplementedError


def event_fields(event: bytes) -> tuple[bytes, bytes]:
    """The (event name, data) of one SSE event; multi-line data is joined with newlines."""
    name = b""
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, b"\n".join(data)


def iter_data(events: list[bytes]) -> Iterator[bytes]:
    for event in events:
        _, data = event_fields(event)
        if data:
            yield data


def frame(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def frame_event(name: str, obj: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"
