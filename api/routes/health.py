"""GET /health: is each part the API depends on reachable?"""

from __future__ import annotations

import dagster as dg
from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from api.deps import InstanceDep, StoreDep
from lakehouse.runtime.compat import daemon_heartbeats
from lakehouse.store import StoreUnavailable

router = APIRouter(tags=["health"])


class PartHealth(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    ok: bool
    object_store: PartHealth
    dagster: PartHealth


@router.get("/health")
def health(store: StoreDep, instance: InstanceDep, response: Response) -> Health:
    """200 when the object store and the Dagster instance both answer, else 503."""
    try:
        store.check()
        store_health = PartHealth(ok=True, detail=f"bucket {store.bucket} reachable")
    except StoreUnavailable as exc:
        store_health = PartHealth(ok=False, detail=str(exc))
    dagster_health = _dagster_health(instance)
    ok = store_health.ok and dagster_health.ok
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(ok=ok, object_store=store_health, dagster=dagster_health)


def _dagster_health(instance: dg.DagsterInstance) -> PartHealth:
    try:
        instance.get_runs(limit=1)
    except SQLAlchemyError as exc:
        return PartHealth(ok=False, detail=f"Dagster instance storage unreadable: {exc}")
    heartbeats = daemon_heartbeats(instance)
    daemons = ", ".join(sorted(heartbeats)) or "no daemon heartbeat yet"
    return PartHealth(ok=True, detail=f"instance readable; daemons: {daemons}")
