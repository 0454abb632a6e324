"""A configuration that needs an optional extra says which one to install when it is missing."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import pytest

from llm_gateway.cache import setup
from llm_gateway.db.engine import make_engine
from llm_gateway.settings import parse_config


def test_postgres_without_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'llm-gateway\[postgres\]'"):
        make_engine("postgresql://u@127.0.0.1:5432/db")
    make_engine("sqlite:///:memory:").dispose()  # SQLite needs no extra


def test_semantic_cache_without_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, *args: Any) -> Any:
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")
    monkeypatch.setattr(importlib, "import_module", missing)
    config = parse_config({"providers": [{"name": "up", "type": "openai-compatible", "base_url": "http://h/v1",
                                          "models": ["*"]}],
                           "cache": {"enabled": True, "semantic": {"enabled": True}}})
    with pytest.raises(ValueError, match=r"needs numpy: pip install 'llm-gateway\[semantic\]'"):
        setup.build_semantic(config, None, None)  # type: ignore[arg-type]
