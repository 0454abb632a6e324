"""Where the text is in a request or an answer (OpenAI wire shapes), as slots a guardrail reads and rewrites."""

from __future__ import annotations

from typing import Any

from llm_gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS

Slot = tuple[Any, Any]  # (container, key): container[key] is a str


def request_slots(endpoint: str, body: dict[str, Any]) -> list[Slot]:
    """The texts a client sends: chat messages (string or text parts), a completion prompt, embedding input."""
    slots: list[Slot] = []
    if endpoint == CHAT:
        messages = body.get("messages")
        for message in messages if isinstance(messages, list) else ():  # another shape: the upstream's 400
            if isinstance(message, dict):
                _content(message, "content", slots)
    elif endpoint == COMPLETIONS:
        _strings(body, "prompt", slots)
    elif endpoint == EMBEDDINGS:
        _strings(body, "input", slots)
    return slots


def answer_slots(body: dict[str, Any]) -> list[Slot]:
    """The texts of a whole answer: each choice's message content and tool-call arguments (chat), or its text
    (completions)."""
    slots: list[Slot] = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            _content(message, "content", slots)
            for call in message.get("tool_calls") or ():  # arguments: a JSON string the model wrote
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    slots.append((function, "arguments"))
        if isinstance(choice.get("text"), str):
            slots.append((choice, "text"))
    return slots


def _content(message: dict[str, Any], key: str, slots: list[Slot]) -> None:
    content = message.get(key)
    if isinstance(content, str):
        slots.append((message, key))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                slots.append((part, "text"))


def _strings(body: dict[str, Any], key: str, slots: list[Slot]) -> None:
    value = body.get(key)
    if isinstance(value, str):
        slots.append((body, key))
    elif isinstance(value, list):
        slots.extend((value, i) for i, item in enumerate(value) if isinstance(item, str))
