"""`secrets` guardrails: the detectors of Yelp's detect-secrets (API keys, tokens, private keys) over prompt text.

Its regex detectors are used as they are, on whole texts rather than source lines: each match is a span. A private
key's span runs from its BEGIN line to its END line. The entropy and keyword detectors are left out: in prose
they flag ordinary words and ids far more often than secrets.
"""

from __future__ import annotations

import re
from typing import Any

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector

from llm_gateway.guardrails.base import Check, Parts, Span
from llm_gateway.settings import GuardrailConfig

LEFT_OUT = {"Public IP (ipv4)", "Secret Keyword"}  # PII finds addresses; keywords are noise in prose
KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\n\s*\n")


def detectors() -> list[tuple[str, re.Pattern[str]]]:
    """Every regex detector detect-secrets ships: (entity name, pattern)."""
    out: list[tuple[str, re.Pattern[str]]] = []
    found: dict[str, Any] = get_mapping_from_secret_type_to_class()
    for secret_type, cls in sorted(found.items()):
        if secret_type in LEFT_OUT or not issubclass(cls, RegexBasedDetector):
            continue
        entity = re.sub(r"[^A-Z0-9]+", "_", secret_type.upper()).strip("_")
        out.extend((entity, pattern) for pattern in cls.denylist)
    return out


class SecretsCheck(Check):
    def __init__(self, config: GuardrailConfig, found: list[tuple[str, re.Pattern[str]]]) -> None:
        super().__init__(config)
        self.detectors = found

    def spans(self, text: str) -> list[Span]:
        spans = []
        for entity, pattern in self.detectors:
            for match in pattern.finditer(text):
                start, end = match.span()
                if match.lastindex and len(match.group(match.lastindex) or "") >= 16:  # the secret, not its context
                    start, end = match.span(match.lastindex)
                if entity == "PRIVATE_KEY":  # the whole block: BEGIN line to END line
                    start -= 5 if text[max(0, start - 5):start] == "-----" else 0
                    stop = KEY_END.search(text, end)
                    end = stop.end() if stop is not None else len(text)
                if end > start:
                    spans.append(Span(start, end, entity))
        return spans


def build(config: GuardrailConfig, parts: Parts) -> Check:
    if "secrets:detectors" not in parts.shared:
        parts.shared["secrets:detectors"] = detectors()
    return SecretsCheck(config, parts.shared["secrets:detectors"])
