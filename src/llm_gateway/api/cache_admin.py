"""The cache's admin endpoint: `POST /api/v1/cache/clear` (everything, or one model's answers)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Security
from pydantic import BaseModel, ConfigDict

from llm_gateway.api.admin.schemas import ERRORS, Name
from llm_gateway.api.admin.wire import MASTER_SCHEME, Auth
from llm_gateway.cache.keys import resolved_model
from llm_gateway.cache.stage import CacheStage
from llm_gateway.routing.catalog import Catalog


class ClearInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: Name | None = None


class Cleared(BaseModel):
    cleared: int
    model: str | None
    enabled: bool


class CacheAdminApi:
    def __init__(self, stage: CacheStage | None, catalog: Catalog) -> None:
        self.stage = stage
        self.catalog = catalog

    def router(self, auth: Auth) -> APIRouter:
        # With no master key configured the gateway has no admin identity: the route is as open as the gateway.
        router = APIRouter(responses=ERRORS, dependencies=[Security(MASTER_SCHEME), Depends(auth.master_if_set)])
        router.add_api_route("/api/v1/cache/clear", self.clear, methods=["POST"], tags=["cache"],
                             response_model=Cleared, summary="Clear the response cache, or one model's answers")
        return router

    async def clear(self, body: ClearInput | None = None,
                    model: Annotated[Name | None, Query(description="only this model's answers")] = None,
                    ) -> dict[str, Any]:
        if body is not None and body.model is not None:
            model = body.model
        removed = 0
        if self.stage is not None:
            if model is None:
                removed = await self.stage.clear(None)
            else:
                for name in {model, resolved_model(self.catalog.resolve(model), model)}:
                    removed += await self.stage.clear(name)
        return {"cleared": removed, "model": model, "enabled": self.stage is not None}
