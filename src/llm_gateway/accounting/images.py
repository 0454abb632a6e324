"""What an image in a prompt costs in tokens: its size (read from a data URL's header) and the model's tile rule.

OpenAI's published rule for tiled models: `detail: low` costs the base alone; `high` (and `auto`, counted as
high so that limits never under-reserve) fits the image in 2048x2048, scales it so its shortest side is 768 px
(never up), and adds a price per 512-px tile. The base and tile prices depend on the model family.

Other families publish other rules: Claude charges width*height/750 after scaling the long edge to at most
1568 px (about 1,600 tokens at most); Gemini charges 258 tokens for an image within 384x384, else 258 per
768x768 tile.

A remote URL's size is unknown without fetching it, which the gateway does not do: it is estimated as a
1024x1024 picture (4 tiles; 765 tokens on gpt-4o).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

# (model prefix, base tokens, tokens per tile), first match wins: longer prefixes first.
TILE_PRICES: tuple[tuple[str, int, int], ...] = (
    ("gpt-4o-mini", 2833, 5667),
    ("gpt-5", 70, 140),
    ("o1", 75, 150),
    ("o3", 75, 150),
    ("gpt-4o", 85, 170),
    ("gpt-4.1", 85, 170),
    ("gpt-4.5", 85, 170),
    ("chatgpt-4o", 85, 170),
)
DEFAULT_PRICES = (85, 170)  # other models: gpt-4o's prices, the most common family
REMOTE_SIZE = (1024, 1024)
# the sizes whose count is the largest for each family, for images up to 2048 px: OpenAI's tiled models (8 tiles),
# Claude (its cap) and Gemini (9 tiles)
LARGEST_SIZES = ((768, 2048), (2048, 2048))
GEMINI_TILE = 258
CLAUDE_LONG_EDGE, CLAUDE_MAX_TOKENS = 1568, 1600
HEADER_CHARS = 64 * 1024  # base64 characters decoded to find a JPEG's frame header (EXIF can come first)


def tile_prices(model: str) -> tuple[int, int]:
    base = model.rsplit("/", 1)[-1].lower()
    for prefix, fixed, tile in TILE_PRICES:
        if base.startswith(prefix):
            return fixed, tile
    return DEFAULT_PRICES


def image_tokens(model: str, size: tuple[int, int] | None, detail: str = "auto") -> int:
    family = model.rsplit("/", 1)[-1].lower()
    if "claude" in family:
        return _claude_tokens(*(size or REMOTE_SIZE))
    if family.startswith("gemini-"):  # model names (gemini-2.5-flash), whichever provider serves them
        side_w, side_h = size or REMOTE_SIZE
        if side_w <= 384 and side_h <= 384:
            return GEMINI_TILE
        return GEMINI_TILE * math.ceil(side_w / 768) * math.ceil(side_h / 768)
    fixed, tile = tile_prices(model)
    if detail == "low":
        return fixed
    pixels_w, pixels_h = size or REMOTE_SIZE
    if pixels_w <= 0 or pixels_h <= 0:
        return fixed
    scale = min(1.0, 2048 / max(pixels_w, pixels_h))
    width, height = pixels_w * scale, pixels_h * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return fixed + tile * math.ceil(width / 512) * math.ceil(height / 512)


def largest_image_tokens(model: str, detail: str = "auto") -> int:
    """An upper bound of what a picture of unknown size up to 2048 px costs: for budgets, which must not
    under-reserve."""
    return max(image_tokens(model, size, detail) for size in LARGEST_SIZES)


def _claude_tokens(width: int, height: int) -> int:
    scale = min(1.0, CLAUDE_LONG_EDGE / max(width, height, 1))
    return min(CLAUDE_MAX_TOKENS, math.ceil(width * scale * height * scale / 750))


def image_size(url: str) -> tuple[int, int] | None:
    """(width, height) of a base64 `data:` URL's PNG, JPEG, GIF or WebP image; None when it cannot be told."""
    if not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    if not head.endswith(";base64"):
        return None
    raw = _decode(data[:HEADER_CHARS])
    size = _size(raw)
    if size is None and len(data) > HEADER_CHARS:
        size = _size(_decode(data))
    return size


def _decode(data: str) -> bytes:
    data = data[:len(data) - len(data) % 4]
    try:
        return base64.b64decode(data)
    except (binascii.Error, ValueError):
        return b""


def _size(raw: bytes) -> tuple[int, int] | None:
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[12:16] == b"IHDR":
        width, height = struct.unpack(">II", raw[16:24])
        return int(width), int(height)
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        width, height = struct.unpack("<HH", raw[6:10])
        return int(width), int(height)
    if raw.startswith(b"\xff\xd8"):
        return _jpeg_size(raw)
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return _webp_size(raw)
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment (SOF0-SOF15, except DHT, JPG and DAC)."""
    at = 2
    while at + 4 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", raw[at + 2:at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > len(raw):
                return None
            height, width = struct.unpack(">HH", raw[at + 5:at + 9])
            return int(width), int(height)
        at += 2 + length
    return None


def _webp_size(raw: bytes) -> tuple[int, int] | None:
    chunk = raw[12:16]
    if chunk == b"VP8X" and len(raw) >= 30:
        return int.from_bytes(raw[24:27], "little") + 1, int.from_bytes(raw[27:30], "little") + 1
    if chunk == b"VP8L" and len(raw) >= 25:  # lossless: 14-bit width-1 and height-1 after a signature byte
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(raw) >= 30:  # lossy: after the frame tag and start code, 14-bit sizes
        width, height = struct.unpack("<HH", raw[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    return None
