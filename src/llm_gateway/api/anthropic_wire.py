"""The Anthropic Messages wire format at the edge: requests to canonical OpenAI bodies, and answers back."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import BadRequest

# OpenAI finish_reason -> Anthropic stop_reason
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
# HTTP status -> Anthropic error type
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error",
               529: "overloaded_error"}


def _effort(budget: int) -> str:
    return "low" if budget < 2048 else "medium" if budget < 8192 else "high"


def _image(source: dict[str, Any]) -> dict[str, Any]:
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        raise BadRequest(f"image sources of type {source.get('type')!r} are not supported", param="messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _user_turn(content: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image(block.get("source") or {}))
        elif kind == "tool_result":  # OpenAI wants tool results as their own messages, before the user's text
            text = _tool_result_text(block.get("content"))
            if block.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise BadRequest(f"content blocks of type {kind!r} are not supported", param="messages")
    if parts:
        plain = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if plain else parts})


def _assistant_turn(content: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "assistant", "content": content})
        return
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict) or "input_schema" not in tool:
            raise BadRequest(f"tool {tool.get('name') if isinstance(tool, dict) else tool!r}: only client tools "
                             "with an input_schema are supported", param="tools")
        fn: dict[str, Any] = {"name": tool.get("name", ""), "parameters": tool["input_schema"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: dict[str, Any], body: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    if choice.get("disable_parallel_tool_use"):
        body["parallel_tool_calls"] = False


def to_openai_request(req: dict[str, Any], counting: bool = False) -> dict[str, Any]:
    """The canonical OpenAI chat body for an Anthropic Messages request (`counting`: for count_tokens)."""
    model = req.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: field required", param="model")
    if not counting and not isinstance(req.get("max_tokens"), int):
        raise BadRequest("max_tokens: field required", param="max_tokens")
    messages = req.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("messages: field required", param="messages")
    out: list[dict[str, Any]] = []
    system = req.get("system")
    if system:
        out.append({"role": "system", "content": system if isinstance(system, str) else _tool_result_text(system)})
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise BadRequest("messages: each message needs role user or assistant", param="messages")
        if message["role"] == "user":
            _user_turn(message.get("content"), out)
        else:
            _assistant_turn(message.get("content"), out)
    body: dict[str, Any] = {"model": model, "messages": out}
    if isinstance(req.get("max_tokens"), int):
        body["max_tokens"] = req["max_tokens"]
    for key in ("temperature", "top_p", "top_k"):
        if req.get(key) is not None:
            body[key] = req[key]
    if req.get("stop_sequences"):
        body["stop"] = req["stop_sequences"]
    if req.get("tools"):
        body["tools"] = _tools(req["tools"])
    if isinstance(req.get("tool_choice"), dict):
        _tool_choice(req["tool_choice"], body)
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        body["reasoning_effort"] = _effort(int(thinking.get("budget_tokens") or 0))
    output = req.get("output_config")
    if isinstance(output, dict):
        if output.get("effort") in ("low", "medium", "high"):
            body["reasoning_effort"] = output["effort"]
        elif output.get("effort") in ("xhigh", "max"):
            body["reasoning_effort"] = "high"
        fmt = output.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": fmt.get("schema") or {}}}
    user = (req.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        body["user"] = user
    if req.get("stream") is True:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    return body


def usage_object(usage: dict[str, Any] | None) -> dict[str, Any]:
    """An Anthropic usage object from an OpenAI one (Anthropic's input_tokens excludes cache reads/writes)."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return {"input_tokens": max(0, int(usage.get("prompt_tokens") or 0) - cached - written),
            "output_tokens": int(usage.get("completion_tokens") or 0),
            "cache_creation_input_tokens": written, "cache_read_input_tokens": cached}


def to_message(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Message for an OpenAI chat.completion."""
    choices = resp.get("choices") or [{}]
    choice = choices[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if msg.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": msg["reasoning_content"], "signature": ""})
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw_arguments": fn.get("arguments")}
        content.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": args})
    return {"id": resp.get("id") or "msg_gateway", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None, "usage": usage_object(resp.get("usage"))}


def error_object(status: int, message: str) -> dict[str, Any]:
    etype = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": etype, "message": message}}


def error_body(status: int, openai_body: bytes) -> bytes:
    """An OpenAI-shaped error body in Anthropic's shape."""
    try:
        parsed = orjson.loads(openai_body)
        message = str(parsed["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = openai_body.decode("utf-8", "replace")[:2000] or f"HTTP {status}"
    return orjson.dumps(error_object(status, message))
