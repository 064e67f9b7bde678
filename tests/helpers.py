"""Small helpers shared by tests."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from lakehouse.formats.csv.options import CsvOptions
from lakehouse.formats.evolution import Evolve
from lakehouse.ingest.landing import Landing
from lakehouse.ingest.records import Dedup, IngestRecord, Mode
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import latest_manifest
from lakehouse.runs import DATASETS_PARTITIONS, DatasetConfig
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore, layout
from lakehouse_assets.assets import dataset as dataset_asset
from lakehouse_assets.resources import build_resources


def land_csv(
    store: ObjectStore,
    dataset: str,
    data: bytes,
    *,
    mode: Mode = "append",
    instance: dg.DagsterInstance | None = None,
    options: CsvOptions | None = None,
    current: Manifest | None = None,
    key: Sequence[str] = (),
    dedup: Dedup = "none",
    evolve: Evolve = "strict",
) -> IngestRecord:
    """Land and commit `data` as the API does (one part); with `instance` (or `current`),
    checked against the dataset's current version as the API checks it."""
    current = latest_manifest(instance, dataset) if instance else current
    landing = Landing(
        store,
        dataset,
        mode=mode,
        current=current,
        sample_rows=1000,
        options=options,
        key=key,
        dedup=dedup,
        evolve=evolve,
    )
    return landing.finish(data).record


def resources_for(settings: Settings) -> dict:
    return build_resources(settings)


def materialize_csv(
    settings: Settings, dataset: str, data: bytes, *, raise_on_error: bool = True
) -> IngestRecord:
    """Land `data` and apply it, as a run of the daemon would, into the Dagster instance at
    the settings' home."""
    record = land_csv(ObjectStore(settings.s3()), dataset, data)
    materialize_record(settings, record, raise_on_error=raise_on_error)
    return record


def materialize_record(
    settings: Settings, record: IngestRecord, *, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        return run_dataset(
            instance, settings, record.dataset, DatasetConfig(), raise_on_error=raise_on_error
        )


def run_dataset(
    instance: dg.DagsterInstance,
    settings: Settings,
    name: str,
    config: DatasetConfig | None = None,
    *,
    resources: dict | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """Run the dataset asset for `name` as a daemon-launched run would (by default: apply
    what is pending, or commit the current state again)."""
    instance.add_dynamic_partitions(DATASETS_PARTITIONS, [name])
    return dg.materialize(
        [dataset_asset],
        instance=instance,
        partition_key=name,
        resources=resources or build_resources(settings),
        run_config=dg.RunConfig(ops={"dataset": config or DatasetConfig()}),
        raise_on_error=raise_on_error,
    )


def data_keys(store: ObjectStore) -> list[str]:
    """Every key in the bucket but the audit trail's (which records refusals too)."""
    return sorted(k for k in store.list_keys("") if not k.startswith(layout.AUDIT))
