"""What a provider's conformance case declares: the client's request and the recorded upstream answer.

Expectations live next to the fixture as `<name>.expect.json`: the exact upstream request the adapter sent
(method, path, headers, JSON body) and the exact response or event stream the client received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Case:
    provider: str  # the provider's name in the conformance gateway's config
    folder: str  # fixtures/<folder>/
    name: str
    request: dict[str, Any]  # the OpenAI request the client sends
    upstream: str  # fixture file replayed as the upstream's answer
    status: int = 200
    content_type: str = "application/json"
    upstream_headers: dict[str, str] = field(default_factory=dict)
    endpoint: str = "chat/completions"
    chunk_size: int = 0  # > 0: replay the body in pieces of this many bytes

    @property
    def id(self) -> str:
        return f"{self.provider}-{self.name}"

    @property
    def upstream_path(self) -> Path:
        return FIXTURES / self.folder / self.upstream

    @property
    def expect_path(self) -> Path:
        return FIXTURES / self.folder / f"{self.name}.expect.json"
