"""`regex` and `keywords` guardrails: the user's own patterns, compiled once at start-up."""

from __future__ import annotations

import re

from llm_gateway.guardrails.base import Check, Parts, Span
from llm_gateway.settings import GuardrailConfig


class PatternCheck(Check):
    """Every match of any pattern (regex) or any whole word (keywords, case-insensitive) is a finding."""

    def __init__(self, config: GuardrailConfig) -> None:
        super().__init__(config)
        sources = list(config.patterns)
        if config.type == "keywords" or config.keywords:
            sources.extend(rf"(?i:\b{re.escape(word)}\b)" for word in config.keywords)
        self.entity = "KEYWORD" if config.type == "keywords" else "PATTERN"
        self.regex = re.compile("|".join(f"(?:{s})" for s in sources) if len(sources) > 1 else sources[0])

    def spans(self, text: str) -> list[Span]:
        return [Span(m.start(), m.end(), self.entity) for m in self.regex.finditer(text) if m.end() > m.start()]


def build(config: GuardrailConfig, parts: Parts) -> Check:
    return PatternCheck(config)
