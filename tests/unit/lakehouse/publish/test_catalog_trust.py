"""The catalog believes only the project's runs: a `dataset` materialization reported from
outside a run, or one whose metadata does not hold together (an unknown column type, a
bad name), is ignored, never becomes what a dataset is, and never fails a reader."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pytest

from lakehouse.formats.csv.types import Column
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import (
    latest_manifest,
    latest_published,
    manifest_metadata,
    trusted_manifest,
)
from lakehouse.runs import DATASET_ASSET_KEY, DATASETS_PARTITIONS


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


def materialized_by_a_run(instance: dg.DagsterInstance, manifests: list[Manifest]) -> None:
    """Versions as a run writes them: materializations logged inside a run."""

    @dg.op
    def write_versions() -> Iterator[dg.AssetMaterialization | dg.Output]:
        for manifest in manifests:
            yield dg.AssetMaterialization(
                DATASET_ASSET_KEY, partition=manifest.name, metadata=manifest_metadata(manifest)
            )
        yield dg.Output(None)

    @dg.job
    def versions() -> None:
        write_versions()

    assert versions.execute_in_process(instance=instance).success


def test_forged_events_after_a_version_neither_hide_it_nor_replace_it() -> None:
    """Attack class: forged catalog entries. 250 runless reports of a version 99 of `sales`
    after its real version 3: the catalog still answers version 3 (reading past them a
    page at a time)."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(DATASETS_PARTITIONS, ["sales"])
    materialized_by_a_run(instance, [sales()])
    forged = manifest_metadata(sales(version=99))
    for _ in range(250):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(DATASET_ASSET_KEY, partition="sales", metadata=forged)
        )
    reads = []
    fetch = instance.fetch_materializations
    instance.fetch_materializations = lambda *a, **kw: reads.append(1) or fetch(*a, **kw)  # type: ignore[method-assign]
    latest = latest_manifest(instance, "sales")
    assert latest is not None and latest.version == 3
    assert len(reads) == 1 + 3  # the newest record, then pages of 100 past the 250 forged
    assert [p.manifest.version for p in latest_published(instance)] == [3]


def test_a_partition_that_is_no_dataset_name_is_ignored() -> None:
    event = reported(manifest_metadata(sales()), partition="Sales; DROP")._replace(run_id="r")
    assert trusted_manifest(event) is None
