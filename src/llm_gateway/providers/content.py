"""Pieces of OpenAI chat messages that every translating provider reads the same way."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import BadRequest


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL, None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise BadRequest("image data URLs must be base64 encoded (data:<type>;base64,...)", param="messages")
    return head[:-7] or "application/octet-stream", data


def text_of(content: Any) -> str:
    """The text of a message content (a string or a list of parts); non-text parts are left out."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def parts_of(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [p for p in content if isinstance(p, dict)]
    return []


def arguments_object(arguments: Any) -> Any:
    """A tool call's `arguments` (a JSON string on the OpenAI wire) as an object."""
    if not isinstance(arguments, str):
        return arguments if arguments is not None else {}
    if not arguments.strip():
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise BadRequest("tool_calls[].function.arguments must be a JSON string", param="messages") from None


def stop_list(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]


def max_tokens_of(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return value if isinstance(value, int) else None


def function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `function` objects of the request's tools."""
    out = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type", "function") == "function" and isinstance(
                tool.get("function"), dict):
            out.append(tool["function"])
    return out
