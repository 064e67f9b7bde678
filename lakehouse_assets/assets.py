from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from lakehouse import commits
from lakehouse.catalog import Manifest, latest_manifest
from lakehouse.commits import CommitRecord
from lakehouse.duck import attach_s3
from lakehouse.iceberg import IcebergTables
from lakehouse.ingests import (
    has_pending,
    mark_pending,
    pending_entries,
    record_applied,
    record_decided,
    settle_pending,
)
from lakehouse.profile import markdown_table, preview_rows, stats_markdown
from lakehouse.runs import DatasetConfig
from lakehouse.storage import ObjectStore, dataset_prefix
from lakehouse.writer import Budget, Built, WriteError, Writer, scratch_dir
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

# How often a run that lost the race for a version number builds again on the winner's.
COMMIT_ATTEMPTS = 3


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
    compare-and-set (`lakehouse.commits`), committed to its Iceberg table as a snapshot, and
    only then emitted, so version numbers are unique and consecutive however runs were
    launched, and the Iceberg table never shows a version the catalog will not. With nothing
    to do (a run the API or the sensor launched after another run applied everything), it
    commits nothing.
    """
    name = context.partition_key
    context.log.info(f"{name}: {config.operation} on top of its latest version")
    store = s3.store()
    with duckdb.get_connection() as con, scratch_dir() as scratch:
        attach_s3(con, store.config)
        writer = Writer(
            store,
            con,
            name,
            context.run.run_id,
            Budget(
                max_reject_share=policy.max_reject_share,
                compaction_max_objects=policy.compaction_max_objects,
                compaction_target_mb=policy.compaction_target_mb,
                sample_rows=policy.sample_rows,
            ),
            Path(scratch),
            context.log.info,
        )
        tables = iceberg.tables(store.config)
        yield from _commit_next_version(context, config, store, con, writer, policy, tables)


def _commit_next_version(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    store: ObjectStore,
    con: duckdb.DuckDBPyConnection,
    writer: Writer,
    policy: LakehousePolicy,
    tables: IcebergTables,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    name = context.partition_key
    for _ in range(COMMIT_ATTEMPTS):
        base = latest_manifest(context.instance, name)
        published = base.version if base else 0
        if (behind := commits.unpublished(store, name, published)) is not None:
            yield from _publish(context, behind, store, con, policy, tables)
            return
        base = base or Manifest.empty(name, store.url(dataset_prefix(name)))
        built = _build(config, store, writer, base, policy)
        if built is None:
            settle_pending(store, name, base.applied_through)
            context.log.info(f"{name}: nothing pending, no new version")
            yield from checks.unchanged(base)
            return
        results = checks.evaluate(
            built.manifest, store, con, policy.max_reject_share, built.allow_empty, built.accounts
        )
        if (failure := _failed_checks(results, built, store, base)) is not None:
            yield from results  # the UI shows which check failed, on the version it kept
            raise failure
        for entry in built.applied:
            record_applied(store, entry)
        # If this run dies after its claim, the hint brings a run that publishes it.
        mark_pending(store, name)
        record = CommitRecord(
            version=built.manifest.version,
            run_id=context.run.run_id,
            manifest=built.manifest,
            outcomes=built.outcomes,
        )
        if commits.claim(store, record):
            record, check, elapsed = _commit_to_iceberg(record, tables)
            if not check.passed:
                yield check
                raise _iceberg_mismatch(record)
            yield _materialization(record, writer, [*results, check], elapsed)
            record_decided(store, name, record.version, record.decided)
            settle_pending(store, name, built.manifest.applied_through)
            return
        context.log.warning(f"{name} v{record.version} was committed by another run: again")
        store.delete(built.written)
    raise dg.Failure(f"{name}: lost the race for a new version {COMMIT_ATTEMPTS} times")


def _build(
    config: DatasetConfig,
    store: ObjectStore,
    writer: Writer,
    base: Manifest,
    policy: LakehousePolicy,
) -> Built | None:
    """The next version, or None when there is nothing to commit."""
    try:
        if config.operation == "apply":
            return _apply(config, store, writer, base, policy)
        if base.version == 0:
            raise WriteError(f"dataset {base.name!r} has no version to {config.operation} yet")
        if config.operation == "compact":
            sort_by = config.sort_by or policy.compaction_sort_keys.get(base.name, [])
            return writer.compact(base, config.target_file_mb, sort_by)
        return _rebuild(store, writer, base)
    except WriteError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc


def _apply(
    config: DatasetConfig,
    store: ObjectStore,
    writer: Writer,
    base: Manifest,
    policy: LakehousePolicy,
) -> Built | None:
    entries = pending_entries(
        store, base.name, base.applied_through, policy.batch_max_ingests, policy.batch_max_bytes
    )
    if entries:
        return writer.apply(base, entries)
    if config.only_if_pending or base.version == 0:
        return None
    return writer.recommit(base)


def _rebuild(store: ObjectStore, writer: Writer, base: Manifest) -> Built:
    """A rebuild that would change the columns under pending appends (checked against the
    current ones when they were acknowledged) would make them fail: it waits for a quiet
    moment instead."""
    built = writer.rebuild(base)
    changed = built.manifest.schema_fingerprint != base.schema_fingerprint
    if changed and has_pending(store, base.name, base.applied_through):
        store.delete(built.written)
        raise WriteError(
            f"rebuilding {base.name!r} would change its columns while ingests checked against "
            "the current ones are pending: run it again once they are applied"
        )
    return built


def _failed_checks(
    results: list[dg.AssetCheckResult], built: Built, store: ObjectStore, base: Manifest
) -> dg.Failure | None:
    """If a blocking check failed: drop what the version wrote, say why it stays as it was."""
    failed = [str(r.check_name) for r in results if not r.passed]
    if not failed:
        return None
    store.delete(built.written)
    return dg.Failure(
        f"blocking checks failed ({', '.join(failed)}): {base.name!r} stays at version "
        f"{base.version}",
        allow_retries=False,
    )


def _commit_to_iceberg(
    record: CommitRecord, tables: IcebergTables
) -> tuple[CommitRecord, dg.AssetCheckResult, float]:
    """Commit the claimed version to its Iceberg table (or find that commit, if it already
    happened) and check it; the record with the snapshot, the check, the commit's seconds.

    Any failure fails the run before the version is emitted: the catalog and the table both
    stay at the previous version, and the next run publishes this one (docs/PROTOCOL.md)."""
    manifest = record.manifest
    try:
        committed = tables.commit(manifest)
    except Exception as exc:  # the store, the catalog database, pyiceberg: all the same here
        raise dg.Failure(
            f"{manifest.name} v{record.version}: the Iceberg commit failed ({exc}); the "
            f"dataset stays at v{record.version - 1} in the catalog and in Iceberg, and the "
            "next run publishes this version"
        ) from exc
    published = manifest.model_copy(update={"iceberg": committed.snapshot})
    record = record.model_copy(update={"manifest": published})
    return record, checks.iceberg(published, tables), committed.seconds


def _iceberg_mismatch(record: CommitRecord) -> dg.Failure:
    return dg.Failure(
        f"{record.manifest.name} v{record.version}: the Iceberg table does not match the "
        "version after its commit (see the iceberg_snapshot_matches check); it is not "
        "published; the dataset needs an operator (see docs/PROTOCOL.md)",
        allow_retries=False,
    )


def _publish(
    context: dg.AssetExecutionContext,
    record: CommitRecord,
    store: ObjectStore,
    con: duckdb.DuckDBPyConnection,
    policy: LakehousePolicy,
    tables: IcebergTables,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Emit a version another run committed but died before emitting (committing it to
    Iceberg first, if that run did not get so far)."""
    owner = context.instance.get_run_by_id(record.run_id)
    if owner is not None and owner.run_id != context.run.run_id and not owner.is_finished:
        # Retried by the step's policy: by then that run has published it, or died.
        raise dg.Failure(
            f"{record.manifest.name} v{record.version} is being published by run "
            f"{record.run_id}: retrying"
        )
    context.log.info(
        f"{record.manifest.name} v{record.version} was committed by run {record.run_id}, "
        "which stopped before publishing it: publishing it now"
    )
    results = checks.evaluate(
        record.manifest, store, con, policy.max_reject_share, allow_empty=True
    )
    if failed := [str(r.check_name) for r in results if not r.passed]:
        yield from results
        raise dg.Failure(
            f"{record.manifest.name} v{record.version}, committed by run {record.run_id}, "
            f"fails its checks ({', '.join(failed)}): it is not published; the dataset needs "
            "an operator (see docs/PROTOCOL.md)",
            allow_retries=False,
        )
    record, check, elapsed = _commit_to_iceberg(record, tables)
    if not check.passed:
        yield check
        raise _iceberg_mismatch(record)
    yield dg.MaterializeResult(
        metadata={**_metadata(record), **_iceberg_timing(elapsed)},
        check_results=[*results, check],
    )
    record_decided(store, record.manifest.name, record.version, record.decided)
    settle_pending(store, record.manifest.name, record.manifest.applied_through)


def _materialization(
    record: CommitRecord, writer: Writer, results: list[dg.AssetCheckResult], iceberg_seconds: float
) -> dg.MaterializeResult:
    manifest = record.manifest
    writer.log(
        f"{manifest.name} v{manifest.version} ({manifest.operation}): {manifest.row_count} rows "
        f"in {len(manifest.objects)} objects; ingests: "
        + ", ".join(f"{o.ingest_id} {o.status}" for o in record.outcomes)
    )
    preview = preview_rows(writer.con, [writer.store.url(o.key) for o in manifest.objects[:1]])
    metadata = {
        **_metadata(record),
        "preview": dg.MetadataValue.md(markdown_table([c.name for c in manifest.columns], preview)),
        **_iceberg_timing(iceberg_seconds),
    }
    return dg.MaterializeResult(metadata=metadata, check_results=results)


def _iceberg_timing(seconds: float) -> dict[str, dg.MetadataValue]:
    """How long this run's Iceberg commit took (0: it had already been made)."""
    return {ICEBERG_COMMIT_MS: dg.MetadataValue.float(round(seconds * 1000, 1))}


def _metadata(record: CommitRecord) -> dict[str, dg.MetadataValue]:
    manifest = record.manifest
    return {
        **manifest.to_metadata(),
        "ingests": dg.MetadataValue.json([o.model_dump(mode="json") for o in record.outcomes]),
        "column_stats": dg.MetadataValue.md(
            stats_markdown([s.model_dump() for s in manifest.stats])
        ),
    }
