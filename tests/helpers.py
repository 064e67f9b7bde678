"""Small helpers shared by tests."""

from __future__ import annotations

import dagster as dg

from lakehouse.ingests import IngestRecord, Landing
from lakehouse.settings import Settings
from lakehouse.storage import ObjectStore
from lakehouse_assets.assets import DatasetConfig
from lakehouse_assets.assets import dataset as dataset_asset
from lakehouse_assets.jobs import DATASET_TAG, INGEST_TAG
from lakehouse_assets.partitions import DATASETS_PARTITIONS
from lakehouse_assets.resources import build_resources


def land_csv(store: ObjectStore, dataset: str, data: bytes) -> IngestRecord:
    """Land `data` as the API does (one part) and record the ingest."""
    return Landing(store, dataset, sample_rows=1000).finish(data).record


def resources_for(settings: Settings) -> dict:
    return build_resources(settings)


def materialize_csv(
    settings: Settings, dataset: str, data: bytes, *, raise_on_error: bool = True
) -> IngestRecord:
    """Land `data` and materialize it into the Dagster instance at the settings' home, with
    the tags the sensor's run carries."""
    record = land_csv(ObjectStore(settings.s3()), dataset, data)
    materialize_record(settings, record, raise_on_error=raise_on_error)
    return record


def materialize_record(
    settings: Settings, record: IngestRecord, *, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        return run_dataset(
            instance,
            settings,
            record.dataset,
            DatasetConfig(ingest_record_key=record.key),
            ingest_id=record.ingest_id,
            raise_on_error=raise_on_error,
        )


def run_dataset(
    instance: dg.DagsterInstance,
    settings: Settings,
    name: str,
    config: DatasetConfig,
    *,
    resources: dict | None = None,
    ingest_id: str = "",
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """Materialize dataset `name` as a daemon-launched run would, with the same tags."""
    instance.add_dynamic_partitions(DATASETS_PARTITIONS, [name])
    return dg.materialize(
        [dataset_asset],
        instance=instance,
        partition_key=name,
        resources=resources or build_resources(settings),
        run_config=dg.RunConfig(ops={"dataset": config}),
        tags={DATASET_TAG: name, **({INGEST_TAG: ingest_id} if ingest_id else {})},
        raise_on_error=raise_on_error,
    )
