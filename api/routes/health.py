"""GET /health: is each part the API depends on reachable?

It answers without a token (load balancers ask it) and then says only yes or no per part;
with an admin token it also says why (which bucket, which daemons, what failed)."""

from __future__ import annotations

import logging
from typing import Annotated

import dagster as dg
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.auth import authenticate, bearer
from api.deps import InstanceDep, SettingsDep, StoreDep
from lakehouse.errors import Unauthenticated
from lakehouse.runtime.compat import daemon_heartbeats
from lakehouse.store import StoreUnavailable

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class PartHealth(BaseModel):
    ok: bool
    detail: str | None = None  # admins only


class Health(BaseModel):
    ok: bool
    object_store: PartHealth
    dagster: PartHealth


@router.get("/health", response_model_exclude_none=True)
async def health(
    request: Request,
    store: StoreDep,
    instance: InstanceDep,
    settings: SettingsDep,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Health:
    """200 when the object store and the Dagster instance both answer, else 503."""
    store_health = await run_in_threadpool(_store_health, store)
    dagster_health = await run_in_threadpool(_dagster_health, instance)
    ok = store_health.ok and dagster_health.ok
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        log.warning("unhealthy: store %s; dagster %s", store_health, dagster_health)
    if not await _is_admin(request, credentials, settings):
        store_health = PartHealth(ok=store_health.ok)
        dagster_health = PartHealth(ok=dagster_health.ok)
    return Health(ok=ok, object_store=store_health, dagster=dagster_health)


async def _is_admin(
    request: Request, credentials: HTTPAuthorizationCredentials | None, settings: SettingsDep
) -> bool:
    if credentials is None:
        return False
    try:
        return (await authenticate(request, credentials, settings)).is_admin
    except Unauthenticated:
        return False


def _store_health(store: StoreDep) -> PartHealth:
    try:
        store.check()
    except StoreUnavailable as exc:
        return PartHealth(ok=False, detail=str(exc))
    return PartHealth(ok=True, detail=f"bucket {store.bucket} reachable")


def _dagster_health(instance: dg.DagsterInstance) -> PartHealth:
    try:
        instance.get_runs(limit=1)
    except SQLAlchemyError as exc:
        return PartHealth(ok=False, detail=f"Dagster instance storage unreadable: {exc}")
    heartbeats = daemon_heartbeats(instance)
    daemons = ", ".join(sorted(heartbeats)) or "no daemon heartbeat yet"
    return PartHealth(ok=True, detail=f"instance readable; daemons: {daemons}")
