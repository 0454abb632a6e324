"""Local token counting: prompt texts seen before are not encoded again, and the memory this takes is bounded."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.accounting.tokens import TokenCounter

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write one sentence about gateways."}]


class CountingEncoding:
    """Wraps a real encoding and counts how many texts it was asked to encode."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[str] = []

    def encode_ordinary(self, text: str) -> list[int]:
        self.calls.append(text)
        return self.real.encode_ordinary(text)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def shared() -> TokenCounter:
    counter = TokenCounter()
    counter.encoding("gpt-4")
    return counter


def counting(shared: TokenCounter, cache_chars: int = 1 << 20) -> tuple[TokenCounter, CountingEncoding]:
    counter = TokenCounter(cache_chars)
    wrapped = CountingEncoding(shared.encoding("gpt-4"))
    counter._encodings["cl100k_base"] = wrapped  # type: ignore[assignment]
    return counter, wrapped


def test_repeated_prompt_texts_are_encoded_once_with_the_same_count(shared: TokenCounter) -> None:
    counter, enc = counting(shared)
    first = counter.count_messages(MESSAGES, "gpt-4")
    assert len(enc.calls) == 4  # two roles, two contents
    again = counter.count_messages(MESSAGES, "gpt-4")
    assert again == first == shared.count_texts(["system", "You are a helpful assistant.", "user",
                                                   "Write one sentence about gateways."], "gpt-4") + 3 + 2 * 3
    assert len(enc.calls) == 4
    # a new user message is encoded; the system prompt and the roles are not
    other = [MESSAGES[0], {"role": "user", "content": "Another question entirely."}]
    counter.count_messages(other, "gpt-4")
    assert enc.calls[4:] == ["Another question entirely."]


def test_the_cache_holds_a_bounded_number_of_characters(shared: TokenCounter) -> None:
    counter, enc = counting(shared, cache_chars=100)
    for i in range(50):
        counter.count_messages([{"role": "user", "content": f"message number {i:04d}"}], "gpt-4")
        assert counter._known_chars <= 100
    big = "word " * 100  # longer than the whole cache: counted, never kept
    assert counter.count_prompt_texts([big], "gpt-4") == len(shared.encoding("gpt-4").encode_ordinary(big))
    assert big not in counter._known["cl100k_base"]
    calls = len(enc.calls)
    counter.count_prompt_texts([big], "gpt-4")
    assert len(enc.calls) == calls + 1


def test_counts_are_kept_per_encoding(shared: TokenCounter) -> None:
    counter = TokenCounter()
    text = "Grüße aus dem Gateway, 12345 tokens?"
    cl100k = counter.count_prompt_texts([text], "gpt-4")
    o200k = counter.count_prompt_texts([text], "gpt-4o")
    assert cl100k == len(shared.encoding("gpt-4").encode_ordinary(text))
    assert o200k == len(counter.encoding("gpt-4o").encode_ordinary(text))
    assert counter.count_prompt_texts([text], "gpt-4") == cl100k
