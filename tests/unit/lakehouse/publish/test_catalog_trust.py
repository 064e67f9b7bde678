"""The catalog believes only the project's runs: a `dataset` materialization reported from
outside a run, or one whose metadata does not hold together (an unknown column type, a
bad name), is ignored, never becomes what a dataset is, and never fails a reader."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from lakehouse.formats.csv.types import Column
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import manifest_metadata, trusted_manifest
from lakehouse.runs import DATASET_ASSET_KEY


def sales(**fields: object) -> Manifest:
    base = Manifest.empty("sales", "s3://b/datasets/sales/")
    return base.model_copy(update={"version": 3, "created_at": datetime.now(UTC), **fields})


def reported(metadata: dict, partition: str = "sales") -> dg.EventLogEntry:
    """A materialization as the instance records it (reported: no run)."""
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(DATASET_ASSET_KEY, partition=partition, metadata=metadata)
    )
    filtered = dg.AssetRecordsFilter(DATASET_ASSET_KEY)
    return instance.fetch_materializations(filtered, limit=1).records[0].event_log_entry


def test_a_version_written_by_a_run_is_believed() -> None:
    event = reported(manifest_metadata(sales()))._replace(run_id="a-run")
    manifest = trusted_manifest(event)
    assert manifest is not None and manifest.version == 3


def test_a_materialization_reported_outside_any_run_is_ignored() -> None:
    """The UI's "Report materialization" and GraphQL's reportRunlessAssetEvents."""
    assert trusted_manifest(reported(manifest_metadata(sales()))) is None


@pytest.mark.parametrize(
    "metadata",
    [
        {},  # no manifest at all
        {"version": "three"},
        "sql injection through a column type",
    ],
    ids=["empty", "wrong-types", "sql-injection-type"],
)
def test_a_malformed_materialization_of_a_run_is_ignored(metadata: object) -> None:
    if metadata == "sql injection through a column type":
        evil = Column("id", "INTEGER) AS id FROM read_csv('/etc/passwd') --", "forged")
        metadata = manifest_metadata(sales(columns=[evil]))
    event = reported(metadata)._replace(run_id="a-run")  # type: ignore[arg-type]
    assert trusted_manifest(event) is None


def test_a_partition_that_is_no_dataset_name_is_ignored() -> None:
    event = reported(manifest_metadata(sales()), partition="Sales; DROP")._replace(run_id="r")
    assert trusted_manifest(event) is None
