"""The models a pass-through body names, in each encoding an upstream reads."""

from __future__ import annotations

import pytest

from llm_gateway.api.passthrough_body import named_models
from llm_gateway.errors import BadRequest

BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(*parts: tuple[str, str]) -> bytes:
    out = b""
    for disposition, value in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n".encode()
    return out + f"--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize(("content_type", "body", "models"), [
    ("", b'{"model": "m", "input": "x"}', {"m"}),
    ("Application/JSON", b'{"model": "m"}', {"m"}),
    ("text/plain", b'{"model": "m"}', {"m"}),
    ("application/octet-stream", b"\x00\x01", set()),
    ("application/x-www-form-urlencoded", b"input=x&model=m", {"m"}),
    ("application/x-www-form-urlencoded", b"input=x;model=m", {"m"}),
    ("application/x-www-form-urlencoded", b"model=a&model=b", {"a", "b"}),
    ("application/x-www-form-urlencoded", b"model=m&input=x", {"m"}),
    (MULTIPART, multipart(('form-data; name="model"', "m"), ('form-data; name="file"; filename="a"', "...")),
     {"m"}),
    (MULTIPART, multipart(("form-data; NAME=model", "m")), {"m"}),
    (MULTIPART, multipart(('form-data; name="purpose"', "batch")), set()),
    (MULTIPART, multipart(('form-data; name="file"; filename="a; b.wav"', "..."), ('form-data; name=model', "m")),
     {"m"}),
    (MULTIPART, multipart(('form-data; name="model"', "a"), ('form-data; name="model"', "b")), {"a", "b"}),
])
def test_every_reading_of_a_body(content_type: str, body: bytes, models: set[str]) -> None:
    assert named_models(content_type, body) == models


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/plain", b'{"model": 1}'),
    ("multipart/form-data", multipart(('form-data; name="model"', "m"))),
    (MULTIPART, multipart(('form-data; name="model"', "m" * 2000))),
    (MULTIPART, multipart(('form-data; name="model"; name="x"', "m"))),
    (MULTIPART, multipart(('form-data; name="x"; NAME="model"', "m"))),
    (MULTIPART, multipart(("form-data; name*=UTF-8''model", "m"))),
    (f"{MULTIPART}; boundary=other", multipart(('form-data; name="model"', "m"))),
])
def test_unreadable_or_odd_bodies_are_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(BadRequest):
        named_models(content_type, body)
