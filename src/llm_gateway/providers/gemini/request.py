"""OpenAI chat and embedding requests as Gemini API requests."""

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
from llm_gateway.providers.gemini.signatures import thought_signature_of

SUPPORTED = frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop", "n",
                       "presence_penalty", "frequency_penalty", "seed", "tools", "tool_choice", "response_format",
                       "reasoning_effort"})
THINKING_BUDGETS = {"minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
GENERATION_KEYS = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("n", "candidateCount"),
                   ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
                   ("seed", "seed"))


def _uses_refs(schema: Any) -> bool:
    """Whether a JSON schema uses $ref/$defs, which Gemini's OpenAPI-subset `parameters` cannot express."""
    if isinstance(schema, dict):
        return any(k in ("$ref", "$defs", "definitions") or _uses_refs(v) for k, v in schema.items())
    if isinstance(schema, list):
        return any(_uses_refs(v) for v in schema)
    return False


def _declaration(function: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": function.get("name", "")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    parameters = function.get("parameters")
    if parameters is not None:
        out["parametersJsonSchema" if _uses_refs(parameters) else "parameters"] = parameters
    return out


def _function_call(call: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A model turn's function call; the thought signature Gemini gave it goes back with it (Gemini 3 refuses
    a function call of its own without it, and 2.5 thinks worse)."""
    fn = call.get("function") or {}
    call_id = str(call.get("id", ""))
    names[call_id] = fn.get("name", "")
    part: dict[str, Any] = {"functionCall": {"name": fn.get("name", ""),
                                             "args": arguments_object(fn.get("arguments"))}}
    signature = thought_signature_of(call)
    if signature:
        part["thoughtSignature"] = signature
    return part


def _part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url") or {}
        url = image.get("url", "") if isinstance(image, dict) else str(image)
        inline = data_url(url)
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
        return {"fileData": {"fileUri": url}}
    raise BadRequest(f"content parts of type {kind!r} cannot be sent to this provider", param="messages")


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system parts, contents); a tool result answers the function named by its tool_call_id."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system.extend(_part(p) for p in parts_of(message.get("content")))
            continue
        if role == "user":
            turn, parts = "user", [_part(p) for p in parts_of(message.get("content"))]
        elif role == "assistant":
            turn, parts = "model", [_part(p) for p in parts_of(message.get("content"))]
            parts.extend(_function_call(call, names) for call in message.get("tool_calls") or ()
                         if isinstance(call, dict))
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), message.get("name") or "")
            turn, parts = "user", [{"functionResponse": {"name": name, "response": {
                "content": text_of(message.get("content"))}}}]
        else:
            raise BadRequest(f"unknown message role {role!r}", param="messages")
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, name in GENERATION_KEYS:
        if body.get(key) is not None:
            config[name] = body[key]
    max_tokens = max_tokens_of(body)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = stop_list(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if fmt["type"] == "json_schema" and schema:
            config["responseJsonSchema"] = schema
    budget = THINKING_BUDGETS.get(body.get("reasoning_effort") or "")
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    return config


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return None


def to_generate_request(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array", param="messages")
    system, contents = _contents(messages)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = function_tools(body)
    if tools:
        out["tools"] = [{"functionDeclarations": [_declaration(f) for f in tools]}]
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config is not None:
        out["toolConfig"] = tool_config
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def to_embed_request(texts: list[str], model: str, dimensions: Any) -> dict[str, Any]:
    requests = []
    for text in texts:
        request: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if isinstance(dimensions, int):
            request["outputDimensionality"] = dimensions
        requests.append(request)
    return {"requests": requests}
