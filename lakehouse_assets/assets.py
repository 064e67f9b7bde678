import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lakehouse.convert import ConversionError, Converted, csv_to_parquet, write_rejects
from lakehouse.duck import attach_s3
from lakehouse.ingests import IngestRecord, read_record
from lakehouse.storage import ObjectStore, dataset_prefix, part_key, rejects_key
from lakehouse_assets.catalog import DataObject, Manifest, latest_manifest
from lakehouse_assets.partitions import dataset_partitions_def
from lakehouse_assets.resources import IngestPolicy, ObjectStoreResource

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
    ingest_policy: IngestPolicy,
) -> dg.MaterializeResult:
    """A dataset: the Parquet objects under `datasets/<name>/` that its latest manifest lists.

    Each run converts one landed CSV (one ingest) into one Parquet object and either appends
    it to the dataset's object list or, for `mode=replace`, makes it the whole list; the
    materialization's metadata is the new manifest.
    """
    name = context.partition_key
    store = s3.store()
    record = read_record(store, config.ingest_record_key)
    if record.dataset != name:
        raise dg.Failure(f"ingest {record.ingest_id} is for {record.dataset!r}, not {name!r}")
    schema = record.csv_schema
    previous = latest_manifest(context.instance, name)
    if previous and record.mode == "append" and previous.schema_fingerprint != schema.fingerprint:
        raise dg.Failure(
            f"ingest {record.ingest_id} has schema {schema.fingerprint}, but dataset {name!r} "
            f"has {previous.schema_fingerprint}: upload it again with mode=replace"
        )
    obj, rejects = _convert(context, store, duckdb, record, ingest_policy.max_reject_share)
    columns = list(schema.columns)
    if previous is None:
        previous = Manifest.first(
            name, store.url(dataset_prefix(name)), columns, schema.fingerprint
        )
    manifest = (
        previous.appended(obj, rejects)
        if record.mode == "append"
        else previous.replaced(obj, rejects, columns, schema.fingerprint)
    )
    context.log.info(
        f"{name} v{manifest.version} ({record.mode}): +{obj.rows} rows from ingest "
        f"{record.ingest_id}, {manifest.row_count} rows in {len(manifest.objects)} objects"
    )
    return dg.MaterializeResult(
        metadata={**manifest.to_metadata(), "source_ingest_id": record.ingest_id}
    )


def _convert(
    context: dg.AssetExecutionContext,
    store: ObjectStore,
    duckdb: DuckDBResource,
    record: IngestRecord,
    max_reject_share: float,
) -> tuple[DataObject, DataObject | None]:
    """The ingest as one Parquet object, and its rejected rows as another (if any)."""
    target = part_key(record.dataset, record.ingest_id)
    with duckdb.get_connection() as con:
        attach_s3(con, store.config)
        try:
            converted = csv_to_parquet(
                con, store.url(record.landing_key), store.url(target), record.csv_schema
            )
        except ConversionError as exc:
            raise dg.Failure(f"ingest {record.ingest_id} could not be read: {exc}") from exc
        if converted.rejected_share > max_reject_share:
            store.delete([target])  # never listed in a manifest: nobody can be reading it
            raise _too_many_rejects(record, converted, max_reject_share)
        rejects = None
        if converted.rejected:
            rejects_target = rejects_key(record.dataset, record.ingest_id)
            write_rejects(con, store.url(rejects_target))
            rejects = DataObject(
                key=rejects_target,
                bytes=store.size(rejects_target),
                rows=converted.rejected,
                ingest_id=record.ingest_id,
            )
    context.log.info(
        f"wrote {converted.rows} rows to {store.url(target)}; {converted.rejected} rejected"
    )
    obj = DataObject(
        key=target, bytes=store.size(target), rows=converted.rows, ingest_id=record.ingest_id
    )
    return obj, rejects


def _too_many_rejects(record: IngestRecord, converted: Converted, allowed: float) -> dg.Failure:
    total = converted.rows + converted.rejected
    return dg.Failure(
        description=(
            f"{converted.rejected} of {total} rows ({converted.rejected_share:.2%}) could not "
            f"be read, more than the {allowed:.2%} allowed: fix them (samples below, with line "
            f"numbers) and upload again; dataset {record.dataset!r} is unchanged"
        ),
        metadata={
            "rejected_rows": converted.rejected,
            "total_rows": total,
            "samples": dg.MetadataValue.json(converted.samples),
        },
        allow_retries=False,
    )
