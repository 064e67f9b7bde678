"""Resources, built from the one `Settings` object the API uses too."""

from __future__ import annotations

import os

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lakehouse.duck import connection_config
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.settings import S3Config, Settings
from lakehouse.store import ObjectStore


class ObjectStoreResource(dg.ConfigurableResource):
    """The lakehouse bucket on any S3 server.

    dagster-aws's `S3Resource` has no bucket and no URL-style setting, and MinIO behind a
    host name needs path-style URLs, so this resource carries both and hands out an
    `ObjectStore` (boto3 underneath).
    """

    endpoint: str = Field(description="S3 API endpoint URL.")
    bucket: str = Field(description="Bucket holding landing files and datasets.")
    region: str = Field(description="Region used to sign requests.")
    access_key: str = Field(description="Access key (read-write).")
    secret_key: str = Field(description="Secret key (read-write).")
    url_style: str = Field(description="'path' (MinIO, SeaweedFS) or 'vhost' (AWS).")

    def config(self) -> S3Config:
        return S3Config.model_validate(self.model_dump())

    def store(self) -> ObjectStore:
        return ObjectStore(self.config())


class IcebergCatalogResource(dg.ConfigurableResource):
    """The Iceberg SQL catalog (JDBC catalog layout) where every dataset is a table."""

    catalog_url: str = Field(
        description="SQLAlchemy URL of the catalog database: the Dagster instance's Postgres "
        "(LAKEHOUSE_POSTGRES_URL), else SQLite under the state directory."
    )

    def tables(self, s3: S3Config) -> IcebergTables:
        return IcebergTables(self.catalog_url, s3)


class LakehousePolicy(dg.ConfigurableResource):
    """How strict materialization is, and how maintenance treats old files."""

    max_reject_share: float = Field(
        description="Largest share of rows that may be rejected (unparseable) before the "
        "whole ingest fails and the dataset stays as it was.",
    )
    sample_rows: int = Field(description="Rows read to infer a CSV's schema (rebuilds too).")
    batch_max_ingests: int = Field(description="Most pending ingests one version applies.")
    batch_max_bytes: int = Field(description="Most bytes of pending ingests one version applies.")
    compaction_max_objects: int = Field(
        description="Merge a dataset's small objects when a version would list more than this."
    )
    compaction_min_objects: int = Field(description="Compact once a dataset has this many.")
    compaction_target_mb: int = Field(description="Target size of compacted files.")
    compaction_sort_keys: dict[str, list[str]] = Field(
        description="Per dataset, the columns compaction sorts rows by."
    )
    retention_days: float = Field(
        description="Age after which settled ingests, versions no longer current and their "
        "runs are pruned, and unused landing files deleted."
    )
    object_grace_minutes: float = Field(
        description="How long objects a newer version no longer lists stay readable."
    )


def _from_env(env_name: str, value: str) -> str | dg.EnvVar:
    """Secrets set in the environment stay references, so the UI never shows their value."""
    return dg.EnvVar(env_name) if env_name in os.environ else value


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "s3": ObjectStoreResource(
            endpoint=settings.s3_endpoint,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key=_from_env("LAKEHOUSE_S3_ACCESS_KEY", settings.s3_access_key),
            secret_key=_from_env("LAKEHOUSE_S3_SECRET_KEY", settings.s3_secret_key),
            url_style=settings.s3_url_style,
        ),
        # The Postgres URL may hold a password: a reference when it comes from the environment.
        "iceberg": IcebergCatalogResource(
            catalog_url=_from_env("LAKEHOUSE_POSTGRES_URL", settings.iceberg_catalog_url)
            if settings.postgres_url
            else settings.iceberg_catalog_url
        ),
        # The policy's fields are settings of the same names.
        "policy": LakehousePolicy(**settings.model_dump(include=set(LakehousePolicy.model_fields))),
        "duckdb": DuckDBResource(
            database=":memory:",
            connection_config=connection_config(
                settings.duckdb_memory_limit, settings.duckdb_threads
            ),
        ),
    }
