"""What every guardrail check shares: the spans it finds, its verdicts, and the error a block becomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_gateway.errors import BadRequest
from llm_gateway.settings import GuardrailConfig

PRE, DURING, POST = "pre_call", "during_call", "post_call"
MASK, REVERSIBLE, BLOCK, LOG_ONLY = "mask", "reversible", "block", "log_only"
PASS = "pass"
ERROR_OPEN = "error_open"  # the check failed and its guardrail is fail-open: the request went on


@dataclass(slots=True, frozen=True)
class Span:
    """Where a check found something in one text: [start, end) and what it is (e.g. EMAIL_ADDRESS)."""

    start: int
    end: int
    entity: str


@dataclass(slots=True)
class Parts:
    """What checks may use when they are built: the gateway's catalog and HTTP client, and objects they share."""

    catalog: Any = None
    client: Any = None
    shared: dict[str, Any] = field(default_factory=dict)


class CheckFailed(Exception):
    """A check could not decide (a webhook or judge that timed out or answered nonsense)."""


class Check:
    """One configured guardrail. `scan` returns, for each text, the spans it found (empty: nothing)."""

    def __init__(self, config: GuardrailConfig) -> None:
        self.config = config
        self.name = config.name
        self.action = config.action
        self.modes = frozenset(config.mode)

    async def scan(self, texts: list[str], stage: str) -> list[list[Span]]:
        return [self.spans(text) for text in texts]

    def spans(self, text: str) -> list[Span]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def whole(text: str, entity: str) -> list[Span]:
    """The whole text as one finding: for checks that judge a text rather than point into it."""
    return [Span(0, len(text), entity)]


@dataclass(slots=True)
class Verdict:
    """What one guardrail decided at one stage of one request. Never holds the matched text."""

    guardrail: str
    stage: str
    action: str
    entities: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"guardrail": self.guardrail, "stage": self.stage, "action": self.action,
                "entities": sorted(set(self.entities))}


class GuardrailBlocked(BadRequest):
    """400 `guardrail_blocked`: names the guardrail, never what it matched."""

    code = "guardrail_blocked"

    def __init__(self, guardrail: str, stage: str) -> None:
        where = "the answer" if stage == POST else "the request"
        super().__init__(f"{where} was blocked by guardrail {guardrail!r}", code="guardrail_blocked")
        self.guardrail = guardrail
