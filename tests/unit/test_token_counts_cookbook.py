"""Local counts against OpenAI's published numbers.

Messages and tools: the OpenAI cookbook "How to count tokens with tiktoken" (sections 6 and 7), whose outputs
were checked against the API's `usage.prompt_tokens`. Images: OpenAI's vision guide ("Calculating costs": low
detail is the base alone; high detail fits the image in 2048x2048, scales its shortest side to 768 and charges
per 512-px tile), with its worked examples.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import pytest

from llm_gateway.accounting.images import image_size, image_tokens
from llm_gateway.accounting.tokens import TokenCounter

JARGON = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate "
                                  "jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant",
     "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch "
                                                          "base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant",
     "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client "
                                "deliverable."},
]
WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_current_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "description": "The unit of temperature to return",
                 "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}]
WEATHER_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


@pytest.mark.parametrize("model,expected", [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129),
                                            ("gpt-4o", 124), ("gpt-4o-mini", 124)])
def test_cookbook_messages(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.count_messages(JARGON, model) == expected


@pytest.mark.parametrize("model,expected", [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101),
                                            ("gpt-4o-mini", 101)])
def test_cookbook_weather_tools(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.count_messages(WEATHER_MESSAGES, model, WEATHER_TOOLS) == expected
    assert counter.count_prompt({"model": model, "messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS},
                                model) == expected


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr +
            struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def _gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def _webp(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def _url(kind: str, data: bytes) -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize("kind,make", [("png", _png), ("jpeg", _jpeg), ("gif", _gif), ("webp", _webp)])
def test_image_size_is_read_from_the_header(kind: str, make: Any) -> None:
    assert image_size(_url(kind, make(1024, 768))) == (1024, 768)
    assert image_size(_url(kind, make(300, 2000))) == (300, 2000)


@pytest.mark.parametrize("model,size,detail,expected", [
    # OpenAI's worked examples for gpt-4o: 1024x1024 high -> 768x768, 4 tiles; 2048x4096 high -> 768x1536,
    # 6 tiles; 4096x8192 low -> the base alone.
    ("gpt-4o", (1024, 1024), "high", 765),
    ("gpt-4o", (2048, 4096), "high", 1105),
    ("gpt-4o", (4096, 8192), "low", 85),
    ("gpt-4.1", (1024, 1024), "high", 765),
    # gpt-4o-mini: base 2,833, 5,667 per tile
    ("gpt-4o-mini", (1024, 1024), "high", 25_501),
    ("gpt-4o-mini", (4096, 8192), "low", 2_833),
    # o1 / o3: base 75, 150 per tile
    ("o1", (1024, 1024), "high", 675),
    # small images are not scaled up: 512x512 is one tile
    ("gpt-4o", (512, 512), "high", 255),
    # Anthropic's vision guide: width*height/750 (200x200 ~54, 1000x1000 ~1334, 1092x1092 ~1590)
    ("claude-sonnet-4-5", (200, 200), "auto", 54),
    ("claude-sonnet-4-5", (1000, 1000), "auto", 1334),
    ("claude-sonnet-4-5", (1092, 1092), "auto", 1590),
    # Gemini: 258 within 384x384, else 258 per 768x768 tile
    ("gemini-2.5-flash", (384, 384), "auto", 258),
    ("gemini-2.5-flash", (1024, 1024), "auto", 1032),
])
def test_image_tokens_by_the_tile_formula(model: str, size: tuple[int, int], detail: str, expected: int) -> None:
    assert image_tokens(model, size, detail) == expected


@pytest.mark.parametrize("model,detail,expected", [("gpt-4o", "high", 765), ("gpt-4o-mini", "high", 25_501),
                                                   ("gpt-4o", "low", 85), ("gpt-4o-mini", "auto", 25_501)])
def test_images_in_messages_are_counted_by_size_and_detail(counter: TokenCounter, model: str, detail: str,
                                                           expected: int) -> None:
    text = [{"role": "user", "content": [{"type": "text", "text": "What is in this image?"}]}]
    image = [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": _url("png", _png(1024, 1024)), "detail": detail}}]}]
    assert counter.count_messages(image, model) - counter.count_messages(text, model) == expected


def test_remote_images_count_as_a_square_picture(counter: TokenCounter) -> None:
    # Their size is unknown without fetching them: estimated as a 1024x1024 picture (documented in docs/).
    msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]
    empty = [{"role": "user", "content": []}]
    assert counter.count_messages(msg, "gpt-4o") - counter.count_messages(empty, "gpt-4o") == 765
