"""GET /v1/catalog: the datasets, read from the Dagster instance (the catalog itself). The
current versions come from the process's views of it, kept current as the queries' are
(`api.query.views.catalog_views`): while nothing is published, no read per dataset."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import PrincipalDep
from api.deps import InstanceDep, SettingsDep
from api.query.views import catalog_views
from lakehouse.auth.grants import Privilege
from lakehouse.errors import NotFound
from lakehouse.manifest import Manifest
from lakehouse.names import validate_name
from lakehouse.publish.catalog import (
    HISTORY_PAGE,
    manifest_history,
)

router = APIRouter(prefix="/catalog", tags=["catalog"])


class DatasetSummary(BaseModel):
    name: str
    dataset_id: str
    version: int
    row_count: int
    bytes: int
    schema_fingerprint: str
    updated_at: datetime


class CatalogListing(BaseModel):
    datasets: list[DatasetSummary]


class VersionHistory(BaseModel):
    name: str
    versions: list[Manifest]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next (older) page; null: no more."
    )


@router.get("")
def list_datasets(
    instance: InstanceDep, settings: SettingsDep, principal: PrincipalDep
) -> CatalogListing:
    """Every dataset the token is granted, with its current version and row count."""
    manifests = catalog_views(instance, settings.s3_bucket).refresh().manifests
    return CatalogListing(
        datasets=[
            DatasetSummary(**manifests[name].model_dump())
            for name in sorted(manifests)
            if principal.granted(name)
        ]
    )


@router.get("/{name}")
def get_dataset(
    name: str, instance: InstanceDep, settings: SettingsDep, principal: PrincipalDep
) -> Manifest:
    """The dataset's manifest: its latest materialization's metadata."""
    principal.require(Privilege.READ, validate_name(name))
    manifest = catalog_views(instance, settings.s3_bucket).refresh().manifests.get(name)
    if manifest is None:
        raise _not_found(name)
    return manifest


@router.get("/{name}/versions")
def get_versions(
    name: str,
    instance: InstanceDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = HISTORY_PAGE,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> VersionHistory:
    """The dataset's versions, newest first, a page at a time (`next_cursor`)."""
    principal.require(Privilege.READ, validate_name(name))
    versions, next_cursor = manifest_history(instance, name, limit, cursor)
    if not versions and cursor is None:
        raise _not_found(name)
    return VersionHistory(name=name, versions=versions, next_cursor=next_cursor)


def _not_found(name: str) -> NotFound:
    return NotFound(f"no dataset named {name!r}: GET /v1/catalog lists them; ingest one first")
