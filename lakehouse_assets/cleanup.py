"""The cleanup job: deletes what retention allows (`lakehouse.publish.retention` for
objects and landing files, `lakehouse.publish.pruning` for settled ingests, old commit
records and old runs)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.publish.pruning import prune_history, tally
from lakehouse.publish.retention import apply_cleanup, plan_cleanup
from lakehouse_assets.resources import (
    IcebergCatalogResource,
    LakehousePolicy,
    ObjectStoreResource,
)


@dg.op(description="Delete what retention allows, and log and count it.")
def clean_up(
    context: dg.OpExecutionContext,
    s3: ObjectStoreResource,
    policy: LakehousePolicy,
    iceberg: IcebergCatalogResource,
) -> dg.Output[None]:
    store = s3.store()
    now = datetime.now(UTC)
    grace = timedelta(minutes=policy.object_grace_minutes)
    retention = max(timedelta(days=policy.retention_days), grace)
    plan = plan_cleanup(context.instance, store, now=now, grace=grace, retention=retention)
    pruned = prune_history(context.instance, store, now, retention)
    cleaned = apply_cleanup(plan, store, iceberg.tables(store.config))
    tally(store, pruned, now)
    context.log.info(
        f"pruned {pruned.ingests} settled ingests, {pruned.marks} duplicate marks, "
        f"{pruned.commit_records} commit records and {pruned.runs} runs; expired "
        f"{cleaned.snapshots} Iceberg snapshots; deleted {len(cleaned.objects)} dataset "
        f"objects, {len(cleaned.metadata)} Iceberg metadata files and "
        f"{len(cleaned.landing)} landing files"
    )
    return dg.Output(
        None,
        metadata={
            "ingests_pruned": pruned.ingests,
            "marks_pruned": pruned.marks,
            "commit_records_pruned": pruned.commit_records,
            "runs_pruned": pruned.runs,
            "dataset_objects": len(cleaned.objects),
            "landing_files": len(cleaned.landing),
            "iceberg_snapshots_expired": cleaned.snapshots,
            "iceberg_metadata_files": len(cleaned.metadata),
        },
    )


@dg.job(
    description="Retention: prune settled ingests, versions no longer current and their "
    "runs; delete replaced dataset objects after their grace period, and landing files "
    "nothing needs."
)
def cleanup_job() -> None:
    clean_up()
