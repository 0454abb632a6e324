"""The cache's admin endpoint: `POST /api/v1/cache/clear` (everything, or one model's answers)."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.api.admin.wire import json_body, query, require_master
from llm_gateway.cache.keys import resolved_model
from llm_gateway.cache.stage import CacheStage
from llm_gateway.errors import BadRequest
from llm_gateway.routing.catalog import Catalog
from llm_gateway.server.http import Request, Responder


class CacheAdminApi:
    def __init__(self, stage: CacheStage | None, catalog: Catalog, master_key: str | None) -> None:
        self.stage = stage
        self.catalog = catalog
        self.master_key = master_key

    async def clear(self, request: Request, responder: Responder) -> None:
        if self.master_key is not None:  # with no master key configured the gateway has no admin identity
            require_master(request, self.master_key)
        body: Any = json_body(request)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object", code="invalid_json")
        model = body.get("model", query(request).get("model"))
        if model is not None and (not isinstance(model, str) or not model):
            raise BadRequest("model must be a model name", param="model")
        removed = 0
        if self.stage is not None:
            if model is None:
                removed = await self.stage.clear(None)
            else:
                names = {model, resolved_model(self.catalog.resolve(model), model)}
                for name in names:
                    removed += await self.stage.clear(name)
        responder.send(200, orjson.dumps({"cleared": removed, "model": model,
                                          "enabled": self.stage is not None}))
