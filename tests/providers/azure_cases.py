"""Conformance cases of the `azure` provider (Azure OpenAI: deployments, api-version, api-key)."""

from __future__ import annotations

from typing import Any

from tests.providers.case import Case

PROVIDERS: list[dict[str, Any]] = [
    {"name": "azure", "type": "azure", "base_url": "{replay}/azure", "api_key": "azure-key-123",
     "options": {"api_version": "2024-10-21"},
     "models": [{"name": "gpt-4o-azure", "model": "my-gpt4o-deployment"},
                {"name": "embed-azure", "model": "my-embedding-deployment"}]},
]


def case(name: str, request: dict[str, Any], upstream: str, **kw: Any) -> Case:
    return Case("azure", "azure", name, request, upstream, **kw)


CASES = [
    case("chat", {"model": "gpt-4o-azure", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.3},
         "chat_completion.json"),
    case("embeddings", {"model": "embed-azure", "input": "hello"}, "embeddings.json", endpoint="embeddings"),
    case("error_content_filter", {"model": "gpt-4o-azure", "messages": [{"role": "user", "content": "bad"}]},
         "error_content_filter.json", status=400),
]
