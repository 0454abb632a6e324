"""OpenAI chat requests as Anthropic Messages API requests."""

from __future__ import annotations

from typing import Any

from llm_gateway.errors import BadRequest
from llm_gateway.providers.content import (
    arguments_object,
    data_url,
    function_tools,
    max_tokens_of,
    parts_of,
    stop_list,
    text_of,
)

# Not `metadata`: OpenAI's is free-form (for stored completions), Anthropic's takes only `user_id` (from `user`).
SUPPORTED = frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop", "tools",
                       "tool_choice", "parallel_tool_calls", "reasoning_effort", "thinking", "response_format"})
# OpenAI reasoning effort -> Anthropic extended-thinking budget (tokens)
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
# The image types the Messages API takes; `image/jpg` is a common misspelling of the first.
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MEDIA_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
# Extended thinking refuses sampling changes: these are left out (and reported) when thinking is on.
NOT_WITH_THINKING = ("temperature", "top_k")


def _image(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url") or {}
    url = image.get("url", "") if isinstance(image, dict) else str(image)
    inline = data_url(url)
    if inline is not None:
        media_type = inline[0].lower()
        media_type = MEDIA_ALIASES.get(media_type, media_type)
        if media_type not in MEDIA_TYPES:
            raise BadRequest(f"images of type {inline[0]!r} cannot be sent to this provider: it takes "
                             f"{', '.join(MEDIA_TYPES)}", param="messages")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts_of(content):
        kind = part.get("type")
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part.get("text", "")}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            blocks.append(_image(part))
        else:
            raise BadRequest(f"content parts of type {kind!r} cannot be sent to this provider", param="messages")
    return blocks


def _assistant(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = [b for b in _blocks(message.get("content")) if b.get("text") != ""]
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                       "input": arguments_object(fn.get("arguments"))})
    return blocks


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages); tool results and consecutive same-role turns merge into one message."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("messages must be objects", param="messages")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content")))
            continue
        if role == "tool":
            role = "user"
            blocks = [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""),
                       "content": text_of(message.get("content"))}]
        elif role == "assistant":
            blocks = _assistant(message)
        elif role == "user":
            blocks = _blocks(message.get("content"))
        else:
            raise BadRequest(f"unknown message role {role!r}", param="messages")
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict):
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    if parallel is False:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


def _thinking(body: dict[str, Any], out: dict[str, Any], forced: bool) -> None:
    """Extended thinking from `thinking` (Anthropic's own) or `reasoning_effort`; its budget is part of
    max_tokens for Anthropic, not on top of it, so max_tokens grows past it when needed."""
    thinking = body.get("thinking")
    budget = THINKING_BUDGETS.get(body.get("reasoning_effort") or "")
    if isinstance(thinking, dict):
        out["thinking"] = thinking
    elif budget is not None and not forced:  # the API refuses extended thinking when a tool call is forced
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    budget = out.get("thinking", {}).get("budget_tokens")
    if isinstance(budget, int) and out["max_tokens"] <= budget:
        out["max_tokens"] += budget


def to_messages_request(body: dict[str, Any], model: str, default_max_tokens: int
                        ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(the Messages request, the parameters left out because they conflict with others)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array", param="messages")
    system, turns = _messages(messages)
    out: dict[str, Any] = {"model": model, "messages": turns}
    if system:
        plain = all(set(b) == {"type", "text"} for b in system)
        out["system"] = "\n\n".join(b["text"] for b in system) if plain else system
    out["max_tokens"] = max_tokens_of(body) or default_max_tokens
    tools = function_tools(body)
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    forced = choice is not None and choice["type"] in ("any", "tool") and bool(tools)
    _thinking(body, out, forced)
    thinking_on = (out.get("thinking") or {}).get("type") == "enabled"
    conflicts = tuple(k for k in NOT_WITH_THINKING if thinking_on and body.get(k) is not None)
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None and key not in conflicts:
            out[key] = body[key]
    stop = stop_list(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    if tools:
        out["tools"] = [{"name": f.get("name", ""), "description": f.get("description", ""),
                         "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
                        for f in tools]
    if choice is not None and (tools or choice["type"] == "none"):
        out["tool_choice"] = choice
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema or {"type": "object"}}}
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out, conflicts
