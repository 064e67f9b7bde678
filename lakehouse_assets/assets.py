import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lakehouse.convert import ConversionError, csv_to_parquet
from lakehouse.duck import attach_s3
from lakehouse.ingests import IngestRecord, read_record
from lakehouse.storage import ObjectStore, dataset_prefix, part_key
from lakehouse_assets.catalog import DataObject, Manifest, latest_manifest
from lakehouse_assets.partitions import dataset_partitions_def
from lakehouse_assets.resources import ObjectStoreResource

LAKEHOUSE_GROUP = "lakehouse"


class IngestConfig(dg.Config):
    ingest_record_key: str = Field(
        description="Key of the ingest record (under ingests/) to materialize."
    )


@dg.asset(
    partitions_def=dataset_partitions_def,
    group_name=LAKEHOUSE_GROUP,
    kinds={"s3", "parquet", "duckdb"},
)
def dataset(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    s3: ObjectStoreResource,
    duckdb: DuckDBResource,
) -> dg.MaterializeResult:
    """A dataset: the Parquet objects under `datasets/<name>/` that its latest manifest lists.

    Each run converts one landed CSV (one ingest) into one Parquet object and appends it to
    the dataset's object list; the materialization's metadata is the new manifest.
    """
    name = context.partition_key
    store = s3.store()
    record = read_record(store, config.ingest_record_key)
    if record.dataset != name:
        raise dg.Failure(f"ingest {record.ingest_id} is for {record.dataset!r}, not {name!r}")
    previous = latest_manifest(context.instance, name) or Manifest.first(
        name,
        store.url(dataset_prefix(name)),
        list(record.csv_schema.columns),
        record.csv_schema.fingerprint,
    )
    if previous.schema_fingerprint != record.csv_schema.fingerprint:
        raise dg.Failure(
            f"ingest {record.ingest_id} has schema {record.csv_schema.fingerprint}, but dataset "
            f"{name!r} has {previous.schema_fingerprint}: refusing to mix schemas"
        )
    obj = _convert(context, store, duckdb, record)
    manifest = previous.with_object(obj)
    context.log.info(
        f"{name} v{manifest.version}: +{obj.rows} rows from ingest {record.ingest_id}, "
        f"{manifest.row_count} rows in {len(manifest.objects)} objects"
    )
    return dg.MaterializeResult(
        metadata={**manifest.to_metadata(), "source_ingest_id": record.ingest_id}
    )


def _convert(
    context: dg.AssetExecutionContext,
    store: ObjectStore,
    duckdb: DuckDBResource,
    record: IngestRecord,
) -> DataObject:
    target = part_key(record.dataset, record.ingest_id)
    with duckdb.get_connection() as con:
        attach_s3(con, store.config)
        try:
            converted = csv_to_parquet(
                con, store.url(record.landing_key), store.url(target), record.csv_schema
            )
        except ConversionError as exc:
            raise dg.Failure(f"ingest {record.ingest_id} could not be converted: {exc}") from exc
    context.log.info(f"wrote {converted.rows} rows to {store.url(target)}")
    return DataObject(
        key=target, bytes=store.size(target), rows=converted.rows, ingest_id=record.ingest_id
    )
