"""The dataset asset: one partition per dataset, each materialization a version. The work
is `lakehouse.versions` (build, check, commit); this maps its result to Dagster's types."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from lakehouse.duck import attach_s3
from lakehouse.ingest.underway import await_uploads
from lakehouse.publish.catalog import InstanceCatalog, manifest_metadata
from lakehouse.publish.profile import markdown_table, preview_rows, stats_markdown
from lakehouse.runs import DatasetConfig
from lakehouse.versions import checks as version_checks
from lakehouse.versions.build import Request, next_version
from lakehouse.versions.commit import (
    Blocked,
    Busy,
    IcebergFailed,
    LostRace,
    Published,
    Result,
    Unchanged,
    VersionCommit,
)
from lakehouse.versions.commits import CommitRecord
from lakehouse.versions.objects import WriteError
from lakehouse.versions.writer import BatchLimits, Writer, scratch_dir
from lakehouse_assets import checks
from lakehouse_assets.partitions import dataset_partitions_def
from lakehouse_assets.resources import (
    IcebergCatalogResource,
    LakehousePolicy,
    ObjectStoreResource,
)

LAKEHOUSE_GROUP = "lakehouse"

# Transient faults (the object store briefly down) are retried inside the run; whatever
# the run decides about an ingest is part of the version, so a retry never decides twice.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)

# Materialization metadata: milliseconds this version's Iceberg commit took in the run.
ICEBERG_COMMIT_MS = "iceberg_commit_ms"


@dg.asset(
    partitions_def=dataset_partitions_def,
    group_name=LAKEHOUSE_GROUP,
    kinds={"s3", "parquet", "duckdb", "iceberg"},
    check_specs=checks.check_specs,
    retry_policy=RETRY_POLICY,
    output_required=False,
)
def dataset(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    s3: ObjectStoreResource,
    duckdb: DuckDBResource,
    policy: LakehousePolicy,
    iceberg: IcebergCatalogResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A dataset: the Parquet objects under `datasets/<name>/` that its latest manifest lists,
    also the Iceberg table `lakehouse.<name>`.

    Every run commits at most one new version on top of the latest one: the pending
    ingests of the dataset's log, in order (apply), the same rows in fewer files
    (compact), every source converted again (rebuild), or, from the UI with nothing
    pending, the current state again. The version is checked, then claimed with a
    compare-and-set, committed to its Iceberg table as a snapshot, and only then emitted
    (`lakehouse.versions.commit`), so version numbers are unique and consecutive however
    runs were launched, and the Iceberg table never shows a version the catalog will not.
    With nothing to do (a run the API or the sensor launched after another run applied
    everything), it commits nothing.
    """
    name = context.partition_key
    context.log.info(f"{name}: {config.operation} on top of its latest version")
    store = s3.store()
    with duckdb.get_connection() as con, scratch_dir() as scratch:
        attach_s3(con, store.config)
        limits = BatchLimits(
            max_reject_share=policy.max_reject_share,
            compaction_max_objects=policy.compaction_max_objects,
            compaction_target_mb=policy.compaction_target_mb,
            sample_rows=policy.sample_rows,
        )
        run_id = context.run.run_id
        writer = Writer(store, con, name, run_id, limits, Path(scratch), context.log.info)
        commit = VersionCommit(
            store,
            iceberg.tables(store.config),
            InstanceCatalog(context.instance),
            name,
            run_id,
            lambda manifest, allow_empty, accounts: version_checks.evaluate(
                manifest, store, con, policy.max_reject_share, allow_empty, accounts
            ),
            context.log.info,
        )
        ask = Request(
            operation=config.operation,
            only_if_pending=config.only_if_pending,
            target_file_mb=config.target_file_mb,
            sort_by=config.sort_by or policy.compaction_sort_keys.get(name, []),
            batch_max_ingests=policy.batch_max_ingests,
            batch_max_bytes=policy.batch_max_bytes,
        )
        if config.operation == "apply":  # an upload under way may be the one it was asked for
            await_uploads(store, name, context.log.info)
        try:
            result = commit.commit(lambda base: next_version(writer, store, base, ask))
        except WriteError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        yield from _as_dagster(result, commit, writer)


def _as_dagster(
    result: Result, commit: VersionCommit, writer: Writer
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The commit's result as Dagster sees it: a materialization (then the commit settles),
    check results, or a failure saying what happens next."""
    name = commit.dataset
    if isinstance(result, Published):
        yield _materialization(result, writer)
        commit.settle(result)
    elif isinstance(result, Unchanged):
        writer.log(f"{name}: nothing pending, no new version")
        yield from checks.all_to_dagster(version_checks.unchanged(result.base))
    elif isinstance(result, Blocked):
        yield from checks.all_to_dagster(result.checks)  # the UI shows which check failed
        raise _blocked(result)
    elif isinstance(result, Busy):
        raise dg.Failure(  # retried by the step's policy: by then that run has published
            f"{name} v{result.record.version} is being published by run "
            f"{result.record.run_id}: retrying"
        )
    elif isinstance(result, LostRace):
        raise dg.Failure(f"{name}: lost the race for a new version {result.attempts} times")
    elif isinstance(result, IcebergFailed):
        raise dg.Failure(
            f"{name} v{result.record.version}: the Iceberg commit failed ({result.error}); the "
            f"dataset stays at v{result.record.version - 1} in the catalog and in Iceberg, "
            "and the next run publishes this version"
        )
    else:
        yield checks.to_dagster(result.check)
        raise _iceberg_mismatch(result.record)


def _blocked(result: Blocked) -> dg.Failure:
    failed = ", ".join(version_checks.failed(result.checks))
    if result.another_run:
        return dg.Failure(
            f"{result.base.name} v{result.base.version}, committed by another run, fails its "
            f"checks ({failed}): it is not published; the dataset needs an operator (see "
            "docs/PROTOCOL.md)",
            allow_retries=False,
        )
    return dg.Failure(
        f"blocking checks failed ({failed}): {result.base.name!r} stays at version "
        f"{result.base.version}",
        allow_retries=False,
    )


def _iceberg_mismatch(record: CommitRecord) -> dg.Failure:
    return dg.Failure(
        f"{record.manifest.name} v{record.version}: the Iceberg table does not match the "
        "version after its commit (see the iceberg_snapshot_matches check); it is not "
        "published; the dataset needs an operator (see docs/PROTOCOL.md)",
        allow_retries=False,
    )


def _materialization(result: Published, writer: Writer) -> dg.MaterializeResult:
    record = result.record
    manifest = record.manifest
    writer.log(
        f"{manifest.name} v{manifest.version} ({manifest.operation}): {manifest.row_count} rows "
        f"in {len(manifest.objects)} objects; ingests: "
        + ", ".join(f"{o.ingest_id} {o.status}" for o in record.outcomes)
    )
    metadata = {
        **manifest_metadata(manifest),
        "ingests": dg.MetadataValue.json([o.model_dump(mode="json") for o in record.outcomes]),
        "column_stats": dg.MetadataValue.md(
            stats_markdown([s.model_dump() for s in manifest.stats])
        ),
        ICEBERG_COMMIT_MS: dg.MetadataValue.float(round(result.iceberg_seconds * 1000, 1)),
    }
    if not result.another_run:
        urls = [writer.store.url(o.key) for o in manifest.objects[:1]]
        preview = preview_rows(writer.con, urls, [(c.name, c.type) for c in manifest.columns])
        columns = [c.name for c in manifest.columns]
        metadata["preview"] = dg.MetadataValue.md(markdown_table(columns, preview))
    return dg.MaterializeResult(
        metadata=metadata, check_results=checks.all_to_dagster(result.checks)
    )
