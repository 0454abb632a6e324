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

SUPPORTED = frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop", "tools",
                       "tool_choice", "parallel_tool_calls", "metadata", "reasoning_effort", "thinking",
                       "response_format"})
# OpenAI reasoning effort -> Anthropic extended-thinking budget (tokens)
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}


def _image(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url") or {}
    url = image.get("url", "") if isinstance(image, dict) else str(image)
    inline = data_url(url)
    if inline is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
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


def to_messages_request(body: dict[str, Any], model: str, default_max_tokens: int) -> dict[str, Any]:
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
    thinking = body.get("thinking")
    budget = THINKING_BUDGETS.get(body.get("reasoning_effort") or "")
    if isinstance(thinking, dict):
        out["thinking"] = thinking
    elif budget is not None and not forced:  # the API refuses extended thinking when a tool call is forced
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if out["max_tokens"] <= budget:  # the budget is part of max_tokens for Anthropic, not on top of it
            out["max_tokens"] += budget
    for key in ("temperature", "top_p", "top_k", "metadata"):
        if body.get(key) is not None:
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
    if isinstance(user, str) and user and "metadata" not in out:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out
