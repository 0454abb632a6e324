"""What tool definitions cost in a chat prompt: the function-calling recipe of OpenAI's cookbook.

"How to count tokens with tiktoken", section 7: each function costs a fixed start, its `name:description`
line, and per parameter a fixed cost and its `name:type:description` line (enum values on top); a final fixed
cost closes the list. Trailing periods of descriptions are not counted. The fixed costs differ by tokenizer
(the cookbook's figures for gpt-4o/gpt-4o-mini, o200k_base, and gpt-3.5-turbo/gpt-4, cl100k_base), and the
totals match the API's `usage.prompt_tokens` for its examples.

Schemas the recipe does not describe (nested objects, arrays, $defs) add their compact JSON, an estimate.
"""

from __future__ import annotations

from typing import Any

import orjson

# (function start, parameters start, per parameter, enum start, per enum value, end of the list)
RECIPES = {"o200k_base": (7, 3, 3, -3, 3, 12), "cl100k_base": (10, 3, 3, -3, 3, 12)}
DESCRIBED = frozenset({"type", "description", "enum"})


def tool_texts(tools: Any, encoding: str, texts: list[str]) -> int:
    """Append the texts the tool definitions are counted by to `texts`; return their fixed tokens."""
    functions: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(function, dict):
            functions.append(function)
    if not functions:
        return 0
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = RECIPES.get(encoding, RECIPES["cl100k_base"])
    fixed = func_end
    for function in functions:
        fixed += func_init
        texts.append(f"{function.get('name', '')}:{_trim(function.get('description'))}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if isinstance(properties, dict) and properties:
            fixed += prop_init
            for name, schema in properties.items():
                fixed += prop_key
                schema = schema if isinstance(schema, dict) else {}
                enum = schema.get("enum")
                if isinstance(enum, list):
                    fixed += enum_init + enum_item * len(enum)
                    texts.extend(str(item) for item in enum)
                texts.append(f"{name}:{_type_name(schema.get('type'))}:{_trim(schema.get('description'))}")
                rest = {k: v for k, v in schema.items() if k not in DESCRIBED}
                if rest:
                    texts.append(orjson.dumps(rest).decode())
        if isinstance(parameters, dict):
            extra = {k: v for k, v in parameters.items() if k in ("$defs", "definitions")}
            if extra:
                texts.append(orjson.dumps(extra).decode())
    return fixed


def _trim(description: Any) -> str:
    text = description if isinstance(description, str) else ""
    return text[:-1] if text.endswith(".") else text


def _type_name(kind: Any) -> str:
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    return str(kind) if kind is not None else "object"
