from collections.abc import Iterator
from typing import Literal

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lakehouse.convert import ConversionError, Converted, csv_to_parquet, write_rejects
from lakehouse.csvschema import CsvSchema, infer_schema
from lakehouse.duck import attach_s3, sql_string
from lakehouse.ingests import SAMPLE_BYTES, IngestRecord, read_receipt, read_record
from lakehouse.profile import column_stats, markdown_table, preview_rows, stats_markdown
from lakehouse.storage import ObjectStore, dataset_prefix, part_key, rejects_key
from lakehouse_assets import checks
from lakehouse_assets.catalog import DataObject, Manifest, latest_manifest
from lakehouse_assets.partitions import dataset_partitions_def
from lakehouse_assets.resources import LakehousePolicy, ObjectStoreResource

LAKEHOUSE_GROUP = "lakehouse"

# Transient faults (the object store briefly down) are retried inside the run.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)


class DatasetConfig(dg.Config):
    operation: Literal["ingest", "compact", "rebuild"] = Field(
        "ingest",
        description="ingest: append or replace with one landed file; compact: rewrite the "
        "objects into fewer files; rebuild: convert every source file again.",
    )
    ingest_record_key: str = Field("", description="For ingest: the ingest record's key.")
    target_file_mb: int = Field(256, description="For compact: target size of each file.")
    sort_by: list[str] = Field([], description="For compact: columns to sort the rows by.")


@dg.asset(
    partitions_def=dataset_partitions_def,
    group_name=LAKEHOUSE_GROUP,
    kinds={"s3", "parquet", "duckdb"},
    check_specs=checks.check_specs,
    retry_policy=RETRY_POLICY,
)
def dataset(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    s3: ObjectStoreResource,
    duckdb: DuckDBResource,
    policy: LakehousePolicy,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A dataset: the Parquet objects under `datasets/<name>/` that its latest manifest lists.

    An ingest run converts one landed CSV into one Parquet object and appends it to the
    object list (or, for `mode=replace`, makes it the whole list); compaction rewrites the
    objects into fewer files; a rebuild converts every source file again. The
    materialization's metadata is the new manifest, checked before it is emitted.
    """
    name = context.partition_key
    store = s3.store()
    previous = latest_manifest(context.instance, name)
    with duckdb.get_connection() as con:
        attach_s3(con, store.config)
        work = Work(context, store, con, policy.max_reject_share)
        if config.operation == "ingest":
            manifest, header_only = work.ingest(
                read_record(store, config.ingest_record_key), previous
            )
        elif previous is None:
            raise dg.Failure(f"dataset {name!r} has no version to {config.operation} yet")
        elif config.operation == "compact":
            sort_by = config.sort_by or policy.compaction_sort_keys.get(name, [])
            manifest = work.compact(previous, config.target_file_mb, sort_by)
            header_only = previous.row_count == 0
        else:
            manifest = work.rebuild(previous)
            header_only = previous.row_count == 0
        results = checks.evaluate(manifest, store, con, policy.max_reject_share, header_only)
        failed = [str(r.check_name) for r in results if not r.passed]
        if failed:
            yield from results
            raise dg.Failure(
                f"blocking checks failed ({', '.join(failed)}): {name!r} stays at version "
                f"{previous.version if previous else 0}",
                allow_retries=False,
            )
        metadata = {**manifest.to_metadata(), **work.profile(manifest)}
    context.log.info(
        f"{name} v{manifest.version} ({config.operation}): {manifest.row_count} rows in "
        f"{len(manifest.objects)} objects"
    )
    yield dg.MaterializeResult(metadata=metadata, check_results=results)


class Work:
    """The three ways a dataset gets a new version, on one DuckDB connection."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        store: ObjectStore,
        con: duckdb.DuckDBPyConnection,
        max_reject_share: float,
    ) -> None:
        self.context, self.store, self.con = context, store, con
        self.max_reject_share = max_reject_share
        self.name = context.partition_key

    def ingest(self, record: IngestRecord, previous: Manifest | None) -> tuple[Manifest, bool]:
        """The next version with this ingest's rows; True if its file was header-only."""
        if record.dataset != self.name:
            raise dg.Failure(f"ingest {record.ingest_id} is for {record.dataset!r}")
        schema = record.csv_schema
        conflict = previous and previous.schema_fingerprint != schema.fingerprint
        if conflict and record.mode == "append":
            raise dg.Failure(
                f"ingest {record.ingest_id} has a schema other than {self.name!r}'s: upload "
                "it again with mode=replace",
                allow_retries=False,
            )
        obj, rejects = self.convert(record, schema, part_key(self.name, record.ingest_id))
        columns = list(schema.columns)
        if previous is None:
            location = self.store.url(dataset_prefix(self.name))
            previous = Manifest.first(self.name, location, columns, schema.fingerprint)
        if record.mode == "replace":
            return previous.replaced(obj, rejects, columns, schema.fingerprint), obj.rows == 0
        return previous.appended(obj, rejects), obj.rows == 0 and previous.row_count == 0

    def convert(
        self, record: IngestRecord, schema: CsvSchema, target: str
    ) -> tuple[DataObject, DataObject | None]:
        """One landed file as one Parquet object, and its rejected rows as another."""
        # Each conversion gets a fresh `reject_errors` table.
        self.con.execute("DROP TABLE IF EXISTS reject_errors")
        self.con.execute("DROP TABLE IF EXISTS reject_scans")
        try:
            converted = csv_to_parquet(
                self.con, self.store.url(record.landing_key), self.store.url(target), schema
            )
        except ConversionError as exc:
            # A file that cannot be read fails the same way on every attempt: fail at once.
            raise dg.Failure(
                f"ingest {record.ingest_id} could not be read: {exc}",
                allow_retries=exc.retryable,
            ) from exc
        if converted.rejected_share > self.max_reject_share:
            self.store.delete([target])  # never listed in a manifest: nobody reads it
            raise _too_many_rejects(record, converted, self.max_reject_share)
        rejects = None
        if converted.rejected:
            rejects_target = rejects_key(self.name, record.ingest_id)
            write_rejects(self.con, self.store.url(rejects_target))
            rejects = self._object(rejects_target, converted.rejected, record.ingest_id)
        self.context.log.info(
            f"ingest {record.ingest_id}: {converted.rows} rows, {converted.rejected} rejected"
        )
        return self._object(target, converted.rows, record.ingest_id), rejects

    def compact(self, previous: Manifest, target_mb: int, sort_by: list[str]) -> Manifest:
        """The same rows in as few files as `target_mb` allows, sorted if asked."""
        version = previous.version + 1
        prefix = f"{dataset_prefix(self.name)}compacted-v{version}-{self.context.run_id[:8]}/"
        source = ", ".join(sql_string(self.store.url(o.key)) for o in previous.objects)
        known = {c.name for c in previous.columns}
        unknown = [c for c in sort_by if c not in known]
        if unknown:
            raise dg.Failure(f"cannot sort by {unknown}: not columns of {self.name!r}")
        order = (
            " ORDER BY " + ", ".join('"' + c.replace('"', '""') + '"' for c in sort_by)
            if sort_by
            else ""
        )
        self.con.execute(
            f"COPY (SELECT * FROM read_parquet([{source}]){order}) "
            f"TO {sql_string(self.store.url(prefix))} (FORMAT parquet, COMPRESSION zstd, "
            f"FILE_SIZE_BYTES '{int(target_mb)}MB', FILENAME_PATTERN 'part-{{i}}')"
        )
        keys = sorted(self.store.list_keys(prefix))
        counts: dict[str, int] = dict(
            self.con.execute(
                "SELECT file_name, num_rows FROM parquet_file_metadata("
                f"[{', '.join(sql_string(self.store.url(k)) for k in keys)}])"
            ).fetchall()
        )
        objects = [self._object(k, counts[self.store.url(k)], "") for k in keys]
        compacted = previous.compacted(objects)
        if compacted.row_count != previous.row_count:
            self.store.delete(keys)
            raise dg.Failure(
                f"compaction of {self.name!r} gave {compacted.row_count} rows, not "
                f"{previous.row_count}: nothing changed",
                allow_retries=False,
            )
        return compacted

    def rebuild(self, previous: Manifest) -> Manifest:
        """Every source file converted again with today's inference rules."""
        records = [read_receipt(self.store, i) for i in previous.source_ingest_ids]
        schema: CsvSchema | None = None
        objects, rejects = [], []
        suffix = f"rebuild-v{previous.version + 1}"
        for record in records:
            sample = self.store.client.get_object(
                Bucket=self.store.bucket,
                Key=record.landing_key,
                Range=f"bytes=0-{SAMPLE_BYTES - 1}",
            )["Body"].read()
            complete = len(sample) == record.bytes
            schema = infer_schema(
                sample, complete=complete, contract=schema.columns if schema else None
            )
            target = part_key(self.name, record.ingest_id).replace("part-", f"{suffix}-part-")
            obj, rejected = self.convert(record, schema, target)
            objects.append(obj)
            rejects += [rejected] if rejected else []
        assert schema is not None
        return previous.rebuilt(objects, rejects, list(schema.columns), schema.fingerprint)

    def profile(self, manifest: Manifest) -> dict[str, dg.MetadataValue]:
        """Per-column statistics and the first rows, for the Dagster UI."""
        urls = [self.store.url(o.key) for o in manifest.objects]
        stats = column_stats(self.con, urls, manifest.columns)
        header = [c.name for c in manifest.columns]
        return {
            "column_stats": dg.MetadataValue.md(stats_markdown(stats)),
            "preview": dg.MetadataValue.md(markdown_table(header, preview_rows(self.con, urls))),
        }

    def _object(self, key: str, rows: int, ingest_id: str) -> DataObject:
        return DataObject(key=key, bytes=self.store.size(key), rows=rows, ingest_id=ingest_id)


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
