"""Spans become placeholders, and placeholders become the original values again, also across stream events."""

from __future__ import annotations

import re

import orjson

from llm_gateway.guardrails.base import REVERSIBLE, Span


class Vault:
    """One request's reversible placeholders: the same value gets the same `<ENTITY_n>` every time it appears."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.originals: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, entity: str, value: str) -> str:
        found = self.by_value.get((entity, value))
        if found is None:
            n = self._counts[entity] = self._counts.get(entity, 0) + 1
            found = f"<{entity}_{n}>"
            self.by_value[(entity, value)] = found
            self.originals[found] = value
        return found


def merged(spans: list[tuple[Span, str]]) -> list[tuple[Span, str]]:
    """Overlapping findings become one: the earliest start wins, then the longest; sorted by position."""
    out: list[tuple[Span, str]] = []
    for span, action in sorted(spans, key=lambda s: (s[0].start, -(s[0].end - s[0].start))):
        if out and span.start < out[-1][0].end:
            last, last_action = out[-1]
            if span.end > last.end:
                out[-1] = (Span(last.start, span.end, last.entity), last_action)
            continue
        out.append((span, action))
    return out


def apply(text: str, spans: list[tuple[Span, str]], vault: Vault | None) -> str:
    """The text with each span replaced: `<ENTITY_n>` for reversible ones (kept in `vault`), else `<ENTITY>`."""
    parts: list[str] = []
    at = 0
    for span, action in merged(spans):
        parts.append(text[at:span.start])
        if action == REVERSIBLE and vault is not None:
            parts.append(vault.placeholder(span.entity, text[span.start:span.end]))
        else:
            parts.append(f"<{span.entity}>")
        at = span.end
    parts.append(text[at:])
    return "".join(parts)


class Restorer:
    """Puts original values back for their placeholders in a text that arrives in pieces.

    Only the shortest tail that could still grow into a placeholder is held back: every other character leaves
    with the piece it came in.
    """

    def __init__(self, originals: dict[str, str]) -> None:
        self.originals = originals
        names = sorted(originals, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(n) for n in names))
        self.prefixes = {n[:i] for n in names for i in range(1, len(n))}
        self.longest = max(len(n) for n in names)
        self.held = ""

    def whole(self, text: str, in_json: bool = False) -> str:
        """`text` with every placeholder restored; `in_json`: inside a JSON string, so the value is escaped."""
        if in_json:
            return self.pattern.sub(lambda m: orjson.dumps(self.originals[m.group(0)]).decode()[1:-1], text)
        return self.pattern.sub(self._original, text)

    def feed(self, text: str) -> str:
        text = self.held + text
        hold = 0
        start = max(0, len(text) - self.longest + 1)
        at = text.find("<", start)
        while at != -1:  # the earliest '<' whose tail is a placeholder's beginning: hold from there
            if text[at:] in self.prefixes:
                hold = len(text) - at
                break
            at = text.find("<", at + 1)
        ready, self.held = text[:len(text) - hold], text[len(text) - hold:]
        return self.pattern.sub(self._original, ready)

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held

    def _original(self, match: re.Match[str]) -> str:
        return self.originals[match.group(0)]
