"""Builds the cache from its configuration: the answer store, the semantic index and embedder, the stage."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llm_gateway.cache.backend import CacheBackend
from llm_gateway.cache.memory import MemoryBackend
from llm_gateway.cache.redis import RedisBackend
from llm_gateway.cache.stage import CacheStage
from llm_gateway.providers.http import HttpClient
from llm_gateway.routing.catalog import Catalog
from llm_gateway.settings import GatewayConfig
from llm_gateway.telemetry.metrics import Registry

if TYPE_CHECKING:
    from llm_gateway.cache.semantic import Embedder, SemanticCache, VectorIndex


def build_backend(config: GatewayConfig) -> CacheBackend:
    cache = config.cache
    if cache.backend == "redis":
        if not config.redis.url:
            raise ValueError("cache.backend: redis needs redis.url")
        return RedisBackend(config.redis.url, cache.redis_prefix, cache.redis_timeout_s, config.redis.pool_size,
                            config.redis)
    return MemoryBackend(int(cache.max_size_mb * 1024 * 1024), cache.max_entries)


def _extra(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ValueError(f"the semantic cache needs {exc.name}: pip install 'llm-gateway[{extra}]'") from None


def build_semantic(config: GatewayConfig, catalog: Catalog, client: HttpClient) -> SemanticCache | None:
    semantic = config.cache.semantic
    if not semantic.enabled and not any(m.semantic for m in config.cache.models.values()):
        return None
    # Imported only when configured: numpy costs every process ~10 MiB, and onnxruntime with the model file
    # is the optional `semantic` extra.
    sem = _extra("llm_gateway.cache.semantic", "semantic")
    embedder: Embedder
    if semantic.embedding == "local":
        local = _extra("llm_gateway.cache.local_embed", "semantic")
        embedder = sem.ThreadedEmbedder(local.LocalEmbedder())
    else:
        embedder = sem.ProviderEmbedder(catalog, client, semantic.embedding)
    index: VectorIndex
    if semantic.backend == "pgvector":
        pg = _extra("llm_gateway.cache.pgvector", "postgres")
        index = pg.PgVectorIndex(semantic.pg_url or config.database.url, semantic.pg_table, config.cache.max_ttl_s)
    else:
        index = sem.MemoryIndex(semantic.max_entries)
    return sem.SemanticCache(semantic, embedder, index)  # type: ignore[no-any-return]


def build_cache(config: GatewayConfig, registry: Registry, catalog: Catalog, client: HttpClient) -> CacheStage | None:
    """The cache stage, or None when `cache.enabled` is off (then nothing of the cache runs per request)."""
    if not config.cache.enabled:
        return None
    return CacheStage(config.cache, build_backend(config), registry, build_semantic(config, catalog, client))
