"""The cleanup job: deletes what retention allows (`lakehouse.publish.retention`)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.publish.retention import apply_cleanup, plan_cleanup
from lakehouse_assets.resources import (
    IcebergCatalogResource,
    LakehousePolicy,
    ObjectStoreResource,
)


@dg.op(description="Delete the objects and landing files that retention allows, and log them.")
def clean_up(
    context: dg.OpExecutionContext,
    s3: ObjectStoreResource,
    policy: LakehousePolicy,
    iceberg: IcebergCatalogResource,
) -> dg.Output[None]:
    store = s3.store()
    plan = plan_cleanup(
        context.instance,
        store,
        now=datetime.now(UTC),
        grace=timedelta(minutes=policy.object_grace_minutes),
        retention=timedelta(days=policy.landing_retention_days),
    )
    cleaned = apply_cleanup(plan, store, iceberg.tables(store.config))
    context.log.info(
        f"expired {cleaned.snapshots} Iceberg snapshots; deleted {len(cleaned.objects)} "
        f"dataset objects, {len(cleaned.metadata)} Iceberg metadata files and "
        f"{len(cleaned.landing)} landing files"
    )
    return dg.Output(
        None,
        metadata={
            "dataset_objects": len(cleaned.objects),
            "landing_files": len(cleaned.landing),
            "iceberg_snapshots_expired": cleaned.snapshots,
            "iceberg_metadata_files": len(cleaned.metadata),
        },
    )


@dg.job(
    description="Delete replaced dataset objects after their grace period, and landing "
    "files no catalog version uses after their retention."
)
def cleanup_job() -> None:
    clean_up()
