"""Provider knowledge stays in `providers/`: no other module names a provider type or preset in its code.

The rule (also in docs/providers.md): outside `src/llm_gateway/providers/`, no identifier and no string literal
may equal (case-insensitively) a provider type (`anthropic`, `azure`, `bedrock`, `gemini`) or an
OpenAI-compatible preset name (`groq`, `ollama`, ...). Prose is free: comments, docstrings and literals that
merely contain a name ("an OpenAI- and Anthropic-compatible gateway") are not provider knowledge.
Exempt: `api/anthropic*.py` (the Anthropic *wire format* ingress, which is about the API shape, not the
provider), `settings.py` (the config schema lists the valid `type` values), and the import of the ingress
module `llm_gateway.api.anthropic` (where `app.py` wires its routes).
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

from llm_gateway.providers.openai_compat.presets import PRESET_NAMES
from llm_gateway.providers.registry import PROVIDER_TYPES

SRC = Path(__file__).resolve().parents[2] / "src" / "llm_gateway"
NAMES = {n.lower() for n in PROVIDER_TYPES if not n.startswith("openai")} | {n.lower() for n in PRESET_NAMES}
INGRESS_IMPORT = "llm_gateway.api.anthropic"
# Known debt, pinned so that it cannot grow: module -> number of violations tolerated, and why.
KNOWN = {
    "telemetry/tracing.py": (5, "OTel gen_ai.system values per provider type; belongs on the Provider classes"),
}


def exempt(path: Path) -> bool:
    rel = path.relative_to(SRC)
    return rel.parts[0] == "providers" or rel.as_posix() == "settings.py" or (
        rel.parts[0] == "api" and rel.name.startswith("anthropic"))


def violations(source: str) -> list[str]:
    found = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for tok in tokens:
        line = tok.line.strip()
        if tok.type == tokenize.NAME and tok.string.lower() in NAMES:
            if line.startswith(("from ", "import ")) and INGRESS_IMPORT in line:
                continue
            found.append(f"{tok.start[0]}: identifier {tok.string!r}")
        elif tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except (SyntaxError, ValueError):  # f-strings
                continue
            if isinstance(value, str) and value.strip().lower() in NAMES:
                found.append(f"{tok.start[0]}: string {value!r}")
    return found


def test_the_rule_catches_provider_branches() -> None:
    assert violations('if provider.type == "bedrock":\n    pass\n') == ["1: string 'bedrock'"]
    assert violations("from llm_gateway.providers.gemini import adapter\n") == ["1: identifier 'gemini'"]
    assert violations('x = "Gemini"\n') == ["1: string 'Gemini'"]
    assert violations('"""Works with Anthropic and Gemini clients."""\n# bedrock is fine in a comment\n') == []
    assert violations("from llm_gateway.api.anthropic import MessagesApi\n") == []


def test_no_provider_names_outside_providers() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        if exempt(path):
            continue
        rel = path.relative_to(SRC).as_posix()
        found = violations(path.read_text())
        if rel in KNOWN and len(found) <= KNOWN[rel][0]:
            continue
        problems += [f"{rel}:{v}" for v in found]
    assert not problems, "provider knowledge outside providers/:\n" + "\n".join(problems)
