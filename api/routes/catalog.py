"""GET /v1/catalog: the datasets, read from the Dagster instance (the catalog itself)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import InstanceDep
from lakehouse.errors import NotFound
from lakehouse.manifest import Manifest
from lakehouse.names import validate_name
from lakehouse.publish.catalog import (
    HISTORY_PAGE,
    latest_manifest,
    latest_manifests,
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
def list_datasets(instance: InstanceDep) -> CatalogListing:
    """Every dataset with its current version and row count."""
    return CatalogListing(
        datasets=[DatasetSummary(**m.model_dump()) for m in latest_manifests(instance).values()]
    )


@router.get("/{name}")
def get_dataset(name: str, instance: InstanceDep) -> Manifest:
    """The dataset's manifest: its latest materialization's metadata."""
    manifest = latest_manifest(instance, validate_name(name))
    if manifest is None:
        raise _not_found(name)
    return manifest


@router.get("/{name}/versions")
def get_versions(
    name: str,
    instance: InstanceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = HISTORY_PAGE,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> VersionHistory:
    """The dataset's versions, newest first, a page at a time (`next_cursor`)."""
    versions, next_cursor = manifest_history(instance, validate_name(name), limit, cursor)
    if not versions and cursor is None:
        raise _not_found(name)
    return VersionHistory(name=name, versions=versions, next_cursor=next_cursor)


def _not_found(name: str) -> NotFound:
    return NotFound(f"no dataset named {name!r}: GET /v1/catalog lists them; ingest one first")
