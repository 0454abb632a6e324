"""OpenAI chat requests as Bedrock Converse requests; embedding requests as InvokeModel bodies."""

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
                       "tool_choice", "reasoning_effort"})
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
# Extended thinking (Claude) refuses sampling changes: these are left out (and reported) when it is on, and
# the budget is part of maxTokens, which must exceed it (room for the answer when the client set none).
NOT_WITH_THINKING = ("temperature", "top_k")
ANSWER_ROOM = 4096


def _block(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url") or {}
        inline = data_url(image.get("url", "") if isinstance(image, dict) else str(image))
        if inline is None or inline[0] not in IMAGE_FORMATS:
            raise BadRequest("this provider takes images as base64 data URLs of PNG, JPEG, GIF or WebP",
                             param="messages")
        return {"image": {"format": IMAGE_FORMATS[inline[0]], "source": {"bytes": inline[1]}}}
    raise BadRequest(f"content parts of type {kind!r} cannot be sent to this provider", param="messages")


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system.extend(_block(p) for p in parts_of(message.get("content")))
            continue
        if role == "user":
            blocks = [_block(p) for p in parts_of(message.get("content"))]
        elif role == "assistant":
            blocks = [_block(p) for p in parts_of(message.get("content")) if p.get("text") != ""]
            for call in message.get("tool_calls") or ():
                fn = call.get("function") or {}
                blocks.append({"toolUse": {"toolUseId": call.get("id", ""), "name": fn.get("name", ""),
                                           "input": arguments_object(fn.get("arguments"))}})
        elif role == "tool":
            role = "user"
            blocks = [{"toolResult": {"toolUseId": message.get("tool_call_id", ""),
                                      "content": [{"text": text_of(message.get("content"))}]}}]
        else:
            raise BadRequest(f"unknown message role {role!r}", param="messages")
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def _tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = function_tools(body)
    if not tools:
        return None
    config: dict[str, Any] = {"tools": [{"toolSpec": {
        "name": f.get("name", ""), "description": f.get("description") or f.get("name", ""),
        "inputSchema": {"json": f.get("parameters") or {"type": "object", "properties": {}}}}} for f in tools]}
    choice = body.get("tool_choice")
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name", "")}}
    return config  # "none" has no Converse equivalent: the model may still call a tool


def to_converse_request(body: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(the Converse request, the parameters left out because they conflict with others)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array", param="messages")
    system, turns = _messages(messages)
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    budget = THINKING_BUDGETS.get(body.get("reasoning_effort") or "")
    conflicts = tuple(k for k in NOT_WITH_THINKING if budget is not None and body.get(k) is not None)
    inference: dict[str, Any] = {}
    max_tokens = max_tokens_of(body)
    if budget is not None and (max_tokens is None or max_tokens <= budget):
        max_tokens = (max_tokens or ANSWER_ROOM) + budget
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if body.get("temperature") is not None and "temperature" not in conflicts:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    stop = stop_list(body.get("stop"))
    if stop:
        inference["stopSequences"] = stop
    if inference:
        out["inferenceConfig"] = inference
    tool_config = _tool_config(body)
    if tool_config is not None:
        out["toolConfig"] = tool_config
    extra: dict[str, Any] = {}
    if body.get("top_k") is not None and "top_k" not in conflicts:
        extra["top_k"] = body["top_k"]
    if budget is not None:
        extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if extra:
        out["additionalModelRequestFields"] = extra
    return out, conflicts


def to_embedding_request(model: str, texts: list[str], body: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """InvokeModel bodies of the embedding model families Bedrock serves (Titan, Cohere)."""
    if ".titan-embed" in model or model.startswith("titan-embed"):
        if len(texts) != 1:
            raise BadRequest("Titan embedding models take one input per request", param="input")
        titan: dict[str, Any] = {"inputText": texts[0]}
        if isinstance(body.get("dimensions"), int):
            titan["dimensions"] = body["dimensions"]
        return titan
    if ".embed-" in model or model.startswith("embed-"):
        return {"texts": texts, "input_type": options.get("input_type", "search_document")}
    raise BadRequest(f"embedding model {model!r} is not a Titan or Cohere model", param="model")
