"""The Responses API wire format at the edge: requests to canonical chat bodies, chat answers to Response objects.

Pure translation, no I/O. Input items become chat messages (a run of function calls becomes one assistant
message with `tool_calls`), function tools become chat tools, and the request's settings map to their chat
names; built-in tools a chat model cannot run are named in `dropped`.
"""

from __future__ import annotations

import secrets
from typing import Any

from llm_gateway.errors import BadRequest

# Echoed on every Response object as the request set them (or as the API's defaults)
ECHOED = ("instructions", "max_output_tokens", "metadata", "previous_response_id", "temperature", "top_p", "user")
# chat finish_reason -> Response status and incomplete_details.reason
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
ITEM_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
NAMESPACE_JOIN = "__"  # a function `f` of the namespace `ns` is `ns__f` to a chat model


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def input_items(value: Any) -> list[dict[str, Any]]:
    """The request's `input` as a list of items, each with an id (what `input_items` lists later)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRequest("input must be a string or a list of input items", param="input")
    out = []
    for item in value:
        item = dict(item)
        kind = item.setdefault("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise BadRequest("input: a message needs role user, system, developer or assistant", param="input")
            if isinstance(item.get("content"), str):
                part = "output_text" if role == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"], **({"annotations": []} if
                                                                               role == "assistant" else {})}]
        if kind in ITEM_PREFIXES:  # as the API lists them later: with an id and a status
            item.setdefault("id", new_id(ITEM_PREFIXES[kind]))
            if kind != "message" or item.get("role") == "assistant":
                item.setdefault("status", "completed")
        out.append(item)
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else ()
    return "".join(str(p.get("text") or p.get("refusal") or "") for p in parts if isinstance(p, dict))


def _user_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise BadRequest("input_image: only image_url (a URL or a data: URL) is supported, not file_id",
                             param="input")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise BadRequest(f"input content parts of type {kind!r} are not supported for this model", param="input")


def _message(item: dict[str, Any], out: list[dict[str, Any]]) -> None:
    role = item["role"]
    content = item.get("content")
    if role == "assistant":
        out.append({"role": "assistant", "content": _text_of(content)})
        return
    if role == "developer":
        role = "system"
    if role == "system" or isinstance(content, str):
        out.append({"role": role, "content": _text_of(content)})
        return
    parts = [_user_part(p) for p in content if isinstance(p, dict)] if isinstance(content, list) else []
    plain = all(p["type"] == "text" for p in parts)
    out.append({"role": role, "content": "".join(p["text"] for p in parts) if plain else parts})


def _function_call(item: dict[str, Any], out: list[dict[str, Any]]) -> None:
    name = str(item.get("name", ""))
    if item.get("namespace"):
        name = flat_name(str(item["namespace"]), name)
    call = {"id": item.get("call_id") or item.get("id") or "", "type": "function",
            "function": {"name": name, "arguments": item.get("arguments") or "{}"}}
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant":  # text and calls of one turn: one chat message
        last.setdefault("tool_calls", []).append(call)
        if last["content"] == "":
            last["content"] = None
        return
    out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def to_messages(instructions: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": _text_of(instructions)})
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            _message(item, out)
        elif kind == "function_call":
            _function_call(item, out)
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id", ""),
                        "content": output if isinstance(output, str) else _text_of(output)})
        elif kind == "item_reference":
            raise BadRequest("item_reference input items are not supported: send the item itself", param="input")
        # reasoning items and built-in tool calls carry nothing a chat model can take back
    return out


def _function(tool: dict[str, Any], name: str) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name, "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def flat_name(namespace: str, name: str) -> str:
    """A namespaced function's name as a chat model sees it (chat names allow letters, digits, _ and -)."""
    return f"{namespace}{NAMESPACE_JOIN}{name}"


def _tools(tools: Any) -> tuple[list[dict[str, Any]], list[str], dict[str, tuple[str, str]]]:
    """Chat tools, the types of the tools left out, and the namespaced functions by their chat names."""
    out, dropped, names = [], [], {}
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            raise BadRequest("tools: each tool must be an object", param="tools")
        kind = tool.get("type")
        if kind == "function":
            out.append(_function(tool, str(tool.get("name", ""))))
        elif kind == "namespace" and isinstance(tool.get("tools"), list):  # client functions in a group
            namespace = str(tool.get("name", ""))
            for inner in tool["tools"]:
                if isinstance(inner, dict) and inner.get("type") == "function":
                    flat = flat_name(namespace, str(inner.get("name", "")))
                    names[flat] = (namespace, str(inner.get("name", "")))
                    out.append(_function(inner, flat))
        else:
            dropped.append(str(kind or "unknown"))
    return out, dropped, names


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return None  # a built-in tool or an allowed-tools list: the model chooses


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        schema: dict[str, Any] = {"name": fmt.get("name") or "output", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        if fmt.get("description"):
            schema["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": schema}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


Names = dict[str, tuple[str, str]]  # chat function name -> (namespace, name) of a namespaced function


def to_chat_request(req: dict[str, Any], items: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str], Names]:
    """The canonical chat body for a Responses request whose whole conversation is `items`, the types of the
    built-in tools it had to leave out, and the namespaced functions by their chat names."""
    model = req.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model", code="missing_model")
    body: dict[str, Any] = {"model": model, "messages": to_messages(req.get("instructions"), items)}
    if not body["messages"]:
        raise BadRequest("input: the request has no input", param="input")
    tools, dropped, names = _tools(req.get("tools"))
    if tools:
        body["tools"] = tools
        choice = _tool_choice(req.get("tool_choice"))
        if choice is not None:
            body["tool_choice"] = choice
        if isinstance(req.get("parallel_tool_calls"), bool):
            body["parallel_tool_calls"] = req["parallel_tool_calls"]
    fmt = _response_format(req.get("text"))
    if fmt is not None:
        body["response_format"] = fmt
    if isinstance(req.get("max_output_tokens"), int):
        body["max_tokens"] = req["max_output_tokens"]
    for key in ("temperature", "top_p", "user"):
        if req.get(key) is not None:
            body[key] = req[key]
    effort = (req.get("reasoning") or {}).get("effort") if isinstance(req.get("reasoning"), dict) else None
    if effort in ("minimal", "low", "medium", "high"):
        body["reasoning_effort"] = effort
    elif effort == "xhigh":
        body["reasoning_effort"] = "high"
    stream = req.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # response.completed carries the usage
    return body, dropped, names


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def echo_of(req: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    """The request's settings as every Response object repeats them (tools the model got, API defaults)."""
    echo: dict[str, Any] = {key: req.get(key) for key in ECHOED}
    echo["metadata"] = req.get("metadata") if isinstance(req.get("metadata"), dict) else {}
    tools = _list(req.get("tools"))
    echo["tools"] = [t for t in tools if isinstance(t, dict) and t.get("type") not in dropped]
    echo["tool_choice"] = req.get("tool_choice") or "auto"
    echo["parallel_tool_calls"] = req.get("parallel_tool_calls") if isinstance(
        req.get("parallel_tool_calls"), bool) else True
    text = _dict(req.get("text"))
    echo["text"] = {"format": text.get("format") or {"type": "text"}}
    reasoning = _dict(req.get("reasoning"))
    echo["reasoning"] = {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
    echo["store"] = req.get("store") is not False
    echo["truncation"] = req.get("truncation") or "disabled"
    echo["background"] = False
    return echo


def response_object(rid: str, created: int, model: str, echo: dict[str, Any], output: list[dict[str, Any]],
                    usage: dict[str, Any] | None, status: str = "completed",
                    incomplete: str | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rid, "object": "response", "created_at": created, "status": status,
                           "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
                           "model": model, "output": output, **echo, "usage": usage}
    return out


def usage_object(usage: Any) -> dict[str, Any] | None:
    """A Responses usage object from a chat one."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    inp, out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"input_tokens": inp, "input_tokens_details": {
                "cached_tokens": int(prompt.get("cached_tokens") or 0),
                "cache_write_tokens": int(prompt.get("cache_write_tokens") or 0)},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": int(completion.get("reasoning_tokens") or 0)},
            "total_tokens": inp + out}


def message_item(text: str, status: str = "completed", refusal: str = "") -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": new_id("msg"), "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(text: str) -> dict[str, Any]:
    return {"id": new_id("rs"), "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def call_item(call_id: str, name: str, arguments: str, names: Names, status: str = "completed") -> dict[str, Any]:
    item = {"id": new_id("fc"), "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}
    if name in names:
        item["namespace"], item["name"] = names[name]
    return item


def to_response(chat: dict[str, Any], rid: str, model: str, echo: dict[str, Any], names: Names) -> dict[str, Any]:
    """A Response object for an OpenAI chat.completion."""
    choice = (chat.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if msg.get("reasoning_content"):
        output.append(reasoning_item(msg["reasoning_content"]))
    if msg.get("content") or msg.get("refusal"):
        output.append(message_item(msg.get("content") or "", refusal=msg.get("refusal") or ""))
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        output.append(call_item(call.get("id") or new_id("call"), fn.get("name", ""), fn.get("arguments") or "",
                                names))
    incomplete = INCOMPLETE.get(choice.get("finish_reason") or "")
    created = int(chat.get("created") or 0)
    return response_object(rid, created, model, echo, output, usage_object(chat.get("usage")),
                           "incomplete" if incomplete else "completed", incomplete)


def history_for_native(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored items as input to a provider that speaks Responses itself: output items lose the ids the gateway
    gave them (the provider never saw those), and reasoning without encrypted content is left out."""
    out = []
    for item in items:
        kind = item.get("type")
        if kind == "reasoning":
            if item.get("encrypted_content"):
                out.append({k: v for k, v in item.items() if k != "status"})
            continue
        if kind in ("message", "function_call", "function_call_output"):
            item = {k: v for k, v in item.items() if k not in ("id", "status")}
        out.append(item)
    return out


def error_event_body(message: str, code: str = "server_error") -> dict[str, Any]:
    return {"code": code, "message": message}
