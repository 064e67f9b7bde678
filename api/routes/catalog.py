"""GET /v1/catalog: the datasets, read from the Dagster instance (the catalog itself)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from api.deps import InstanceDep, dataset_name
from lakehouse_assets.catalog import Manifest, latest_manifest, latest_manifests, manifest_history

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


@router.get("")
def list_datasets(instance: InstanceDep) -> CatalogListing:
    """Every dataset with its current version and row count."""
    return CatalogListing(
        datasets=[DatasetSummary(**m.model_dump()) for m in latest_manifests(instance).values()]
    )


@router.get("/{name}")
def get_dataset(name: str, instance: InstanceDep) -> Manifest:
    """The dataset's manifest: its latest materialization's metadata."""
    manifest = latest_manifest(instance, dataset_name(name))
    if manifest is None:
        raise _not_found(name)
    return manifest


@router.get("/{name}/versions")
def get_versions(name: str, instance: InstanceDep) -> VersionHistory:
    """Every version of the dataset, newest first."""
    versions = manifest_history(instance, dataset_name(name))
    if not versions:
        raise _not_found(name)
    return VersionHistory(name=name, versions=versions)


def _not_found(name: str) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        detail=f"no dataset named {name!r}: GET /v1/catalog lists them; ingest one first",
    )
