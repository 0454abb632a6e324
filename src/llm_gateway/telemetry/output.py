"""What the upstream answered, read back from `ctx.output` for traces and body logging (never on the hot path).

`ctx.output` is the OpenAI-shaped JSON body of a complete response, or the StreamDecoder of a streamed one.
Parsing happens here only when a trace or a body log line asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_gateway.pipeline.context import RequestContext


@dataclass(slots=True)
class Answer:
    response_id: str = ""
    model: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def _take(chunk: Any, answer: Answer, texts: bool) -> None:
    if not isinstance(chunk, dict):
        return
    if not answer.response_id and isinstance(chunk.get("id"), str):
        answer.response_id = chunk["id"]
    if not answer.model and isinstance(chunk.get("model"), str):
        answer.model = chunk["model"]
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            answer.finish_reasons.append(reason)
        if texts:
            message = choice.get("message") or choice.get("delta") or {}
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(choice.get("text"), str):
                text = choice["text"]
            if isinstance(text, str):
                answer.texts.append(text)


def read_answer(ctx: RequestContext, texts: bool = False) -> Answer:
    """Response id, model, finish reasons (and the generated texts when `texts`) of the request's answer."""
    answer = Answer()
    output = ctx.output
    if isinstance(output, bytes):
        try:
            _take(orjson.loads(output), answer, texts)
        except orjson.JSONDecodeError:
            pass
        return answer
    if output is None:
        return answer
    # A decoder may state its finish reasons itself; the pass-through decoder keeps the raw events instead.
    reasons = getattr(output, "finish_reasons", None)
    payloads = getattr(output, "payloads", None)
    if callable(payloads):
        for payload in payloads():
            try:
                _take(orjson.loads(payload), answer, texts)
            except (orjson.JSONDecodeError, TypeError):
                continue
    if isinstance(reasons, list):
        answer.finish_reasons = [r for r in reasons if isinstance(r, str)]
    if texts and not answer.texts:
        answer.texts = list(output.completion_texts())
    return answer
