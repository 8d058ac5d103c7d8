"""`/v1/routes`: the model routes this server is configured with (`RUNYARD_ROUTES`), never keys."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from ...worker.routing import configured
from ..auth import org_id
from ..errors import ERRORS

router = APIRouter(tags=["routes"], responses=ERRORS)

SHOWN = ("model", "base_url", "prices", "fallback", "max_retries", "timeout", "max_concurrency")
"""What a route shows: `api_key_env` (where its key comes from) and anything else stay private."""


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["route"] = "route"
    model: str
    base_url: str | None = None
    prices: dict[str, float] | None = None
    """USD per million tokens (`input_mtok`, `output_mtok`, `cache_read_mtok`); null: genai-prices."""
    fallback: list[str] = []
    max_retries: int | None = None
    timeout: float | None = None
    max_concurrency: int | None = None


class RouteList(BaseModel):
    data: list[Route]


@router.get("/v1/routes", response_model=RouteList)
async def list_routes(request: Request, _org: str = Depends(org_id)) -> dict[str, Any]:
    """The configured routes in file order: model, base URL, prices and fallbacks."""
    routes = configured(request.app.state.settings)
    return {"data": [{"id": rid, **r.model_dump(include=set(SHOWN))} for rid, r in routes.items()]}
