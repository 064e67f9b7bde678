"""GET /metrics: the numbers an operator watches, for Prometheus (api/metrics.py). An admin
token is needed: they name every dataset."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from api.auth import PrincipalDep
from api.deps import InstanceDep, StoreDep
from api.metrics import exposition
from lakehouse.auth.grants import Privilege

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(principal: PrincipalDep, store: StoreDep, instance: InstanceDep) -> Response:
    """Every figure in Prometheus's text format (the README lists them)."""
    principal.require(Privilege.ADMIN)
    body, content_type = await run_in_threadpool(exposition, store, instance)
    return Response(body, media_type=content_type)
