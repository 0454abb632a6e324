"""The semantic cache: prompts embedded, compared by cosine similarity within a partition, pointing at exact keys.

A partition is the model, the sharing scope (key, team or everyone) and every parameter but the conversation,
so a semantic hit differs from its request only in wording. The answers themselves stay in the exact store.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from llm_gateway.accounting.usage import side_call
from llm_gateway.cache.keys import partition_key, scope_of
from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import CHAT, EMBEDDINGS, UpstreamCall
from llm_gateway.providers.http import HttpClient
from llm_gateway.routing.catalog import Catalog
from llm_gateway.settings import ModelCacheConfig, SemanticCacheConfig

if TYPE_CHECKING:
    from llm_gateway.cache.stage import Ticket

log = logging.getLogger("llm_gateway.cache")


class SyncEmbedder(Protocol):
    def embed(self, text: str) -> np.ndarray: ...


class Embedder(Protocol):
    async def vector(self, text: str, ctx: RequestContext) -> np.ndarray | None:
        """The text's unit vector; a paid call is charged to the request `ctx` (accounting.usage.side_call)."""
        ...

    async def close(self) -> None: ...


class ThreadedEmbedder:
    """A local model run on one worker thread: the event loop never waits for inference."""

    def __init__(self, model: SyncEmbedder) -> None:
        self.model = model
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    async def vector(self, text: str, ctx: RequestContext) -> np.ndarray | None:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.model.embed, text)

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class ProviderEmbedder:
    """Embeddings from a model this gateway serves, called through its own providers and HTTP client."""

    def __init__(self, catalog: Catalog, client: HttpClient, model: str) -> None:
        self.catalog = catalog
        self.client = client
        self.model = model

    async def vector(self, text: str, ctx: RequestContext) -> np.ndarray | None:
        route = self.catalog.resolve(self.model)
        if route is None:
            return None
        deployment = route.pick()
        provider = deployment.provider
        call = UpstreamCall(endpoint=EMBEDDINGS, body={"model": self.model, "input": text}, model=deployment.model,
                            stream=False, client_wants_usage=False, client_auth=None, client_headers={})
        prepared = provider.prepare(call)
        try:
            response = await (provider.transport or self.client).send(provider.origin, prepared, provider.timeouts,
                                                                      label=provider.name)
            body = await response.read()
        except Exception as exc:  # an embedding outage turns the semantic cache off for the request, no more
            log.warning("cache: embedding call to %s failed: %s", self.model, type(exc).__name__)
            return None
        if response.status != 200:
            return None
        try:
            parsed = provider.parse(call, body)
            if parsed.usage is not None:  # the provider bills this call: so is the request it was made for
                side_call(ctx, deployment, parsed.usage)
            data = orjson.loads(parsed.body)["data"][0]["embedding"]
            vector = np.asarray(data, dtype=np.float32)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            return None
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else None

    async def close(self) -> None:
        return None


def prompt_text(body: dict[str, Any], limit: int) -> str:
    """The conversation as text, one `role: content` line per message; its end is kept when too long."""
    lines = []
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():  # another shape: the upstream's 400
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p["text"] for p in content
                               if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
        if isinstance(content, str) and content:
            lines.append(f"{message.get('role', 'user')}: {content}")
    text = "\n".join(lines)
    return text[-limit:]


class _Bucket:
    """A ring of at most `limit` vectors: rows fill up, then the oldest row is overwritten."""

    __slots__ = ("count", "matrix", "next", "refs")

    def __init__(self, dim: int) -> None:
        self.matrix = np.zeros((8, dim), dtype=np.float32)
        self.refs: list[tuple[str, str]] = []
        self.count = 0
        self.next = 0

    def add(self, vector: np.ndarray, ref: tuple[str, str], limit: int) -> None:
        if self.count < limit:
            if self.count == len(self.matrix):
                grown = np.zeros((min(len(self.matrix) * 2, limit), self.matrix.shape[1]), dtype=np.float32)
                grown[:self.count] = self.matrix
                self.matrix = grown
            self.matrix[self.count] = vector
            self.refs.append(ref)
            self.count += 1
            return
        self.matrix[self.next] = vector
        self.refs[self.next] = ref
        self.next = (self.next + 1) % limit


class MemoryIndex:
    """Vectors per partition in numpy matrices; a partition keeps its newest `max_entries`."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.buckets: dict[str, _Bucket] = {}

    async def search(self, partition: str, vector: np.ndarray) -> tuple[str, str, float] | None:
        bucket = self.buckets.get(partition)
        if bucket is None or not bucket.count:
            return None
        scores = bucket.matrix[:bucket.count] @ vector
        best = int(np.argmax(scores))
        key, model = bucket.refs[best]
        return key, model, float(scores[best])

    async def add(self, partition: str, vector: np.ndarray, key: str, model: str) -> None:
        bucket = self.buckets.get(partition)
        if bucket is None:
            bucket = self.buckets[partition] = _Bucket(vector.shape[0])
        if (key, model) not in bucket.refs:
            bucket.add(vector, (key, model), self.max_entries)

    async def clear(self, model: str | None) -> None:
        for partition, bucket in list(self.buckets.items()):
            if model is None or any(ref[1] == model for ref in bucket.refs):
                fresh = _Bucket(bucket.matrix.shape[1])
                for i, ref in enumerate(bucket.refs):
                    if model is not None and ref[1] != model:
                        fresh.add(bucket.matrix[i], ref, self.max_entries)
                self.buckets[partition] = fresh

    async def close(self) -> None:
        self.buckets.clear()


class VectorIndex(Protocol):
    async def search(self, partition: str, vector: np.ndarray) -> tuple[str, str, float] | None: ...

    async def add(self, partition: str, vector: np.ndarray, key: str, model: str) -> None: ...

    async def clear(self, model: str | None) -> None: ...

    async def close(self) -> None: ...


class SemanticCache:
    def __init__(self, config: SemanticCacheConfig, embedder: Embedder, index: VectorIndex) -> None:
        self.config = config
        self.embedder = embedder
        self.index = index
        self.tasks: set[asyncio.Task[None]] = set()

    def enabled_for(self, mc: ModelCacheConfig | None) -> bool:
        if mc is not None and mc.semantic is not None:
            return mc.semantic
        return self.config.enabled

    async def lookup(self, ctx: RequestContext, ticket: Ticket,
                     mc: ModelCacheConfig | None) -> tuple[str, str, float] | None:
        """(exact key, model, similarity) of the closest earlier answer at or above the threshold."""
        if ctx.endpoint != CHAT:
            return None
        text = prompt_text(ctx.body, self.config.max_text_chars)
        if not text:
            return None
        vector = await self.embedder.vector(text, ctx)
        if vector is None:
            return None
        scope = scope_of(self.config.scope, ctx)
        ticket.partition = partition_key(ctx.endpoint, ticket.model, scope, ctx.body)
        ticket.vector = vector
        found = await self.index.search(ticket.partition, vector)
        threshold = mc.semantic_threshold if mc is not None and mc.semantic_threshold else self.config.threshold
        if found is None or found[2] < threshold or found[0] == ticket.key:
            return None
        return found

    def add(self, ticket: Ticket) -> None:
        task = asyncio.get_running_loop().create_task(
            self.index.add(ticket.partition, ticket.vector, ticket.key, ticket.model))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def clear(self, model: str | None) -> None:
        await self.index.clear(model)

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        await self.embedder.close()
        await self.index.close()
