"""POST /v1/datasets/{name}/purge: erase now what only a dataset's earlier versions hold
(`lakehouse.publish.purge`), e.g. the rows a GDPR delete took out of the current one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.auth import PrincipalDep
from api.deps import InstanceDep, SettingsDep, StoreDep
from lakehouse.auth.grants import Privilege
from lakehouse.names import validate_name
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore

if TYPE_CHECKING:
    from lakehouse.publish.purge import Purged

router = APIRouter(prefix="/datasets", tags=["datasets"])


class PurgeAnswer(BaseModel):
    dataset: str
    version: int = Field(description="The current version: the only one left.")
    snapshots_expired: int = Field(description="Iceberg snapshots of earlier versions.")
    objects_deleted: int = Field(description="Parquet objects only earlier versions listed.")
    metadata_files_deleted: int = Field(description="Iceberg metadata only they needed.")
    landing_files_deleted: int = Field(description="Uploaded files no version needs now.")
    runs_deleted: int = Field(description="Dagster runs that emitted earlier versions.")


@router.post(
    "/{name}/purge",
    responses={
        403: {"description": "The token may not purge this dataset (--allow purge)."},
        404: {"description": "No such dataset (or one the token is not granted)."},
        409: {"description": "A version is being committed: purge again once published."},
    },
)
async def purge_dataset(
    name: str,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    store: StoreDep,
    instance: InstanceDep,
) -> PurgeAnswer:
    """Keep only the current version of dataset `name`: expire the Iceberg snapshots of the
    versions before it, delete the objects, metadata and uploaded files only they needed,
    and the runs that emitted them. Idempotent: a purge that failed is finished by the
    next. Queries of the current version are unaffected; `as_of` an earlier one fails."""
    name = validate_name(name)
    if (audit := request.scope.get("state", {}).get("audit")) is not None:
        audit.update(datasets=[name])
    principal.require(Privilege.PURGE, name)
    done = await run_in_threadpool(_purge, instance, store, settings, name)
    return PurgeAnswer(
        dataset=done.dataset,
        version=done.version,
        snapshots_expired=done.snapshots,
        objects_deleted=len(done.objects),
        metadata_files_deleted=len(done.metadata),
        landing_files_deleted=len(done.landing),
        runs_deleted=done.runs,
    )


def _purge(
    instance: dg.DagsterInstance, store: ObjectStore, settings: Settings, name: str
) -> Purged:
    # Imported here, in a worker thread, at the first purge: pyiceberg (and pandas, which
    # it loads) would add ~3 CPU-s and ~60 MiB to every API process's start for this one
    # route.
    from lakehouse.publish.iceberg import IcebergTables
    from lakehouse.publish.purge import purge

    return purge(instance, store, IcebergTables(settings.iceberg_catalog_url, store.config), name)
