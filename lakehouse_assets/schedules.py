"""Schedules: nightly compaction of datasets whose object list has grown, and cleanup."""

import dagster as dg

from lakehouse.publish.catalog import latest_manifests
from lakehouse.runs import DatasetConfig, run_config, run_tags
from lakehouse.settings import Settings
from lakehouse_assets.cleanup import cleanup_job
from lakehouse_assets.jobs import compaction_job
from lakehouse_assets.resources import LakehousePolicy


def compaction_requests(
    instance: dg.DagsterInstance, policy: LakehousePolicy
) -> list[dg.RunRequest]:
    """One compaction run per dataset with at least `compaction_min_objects` objects."""
    return [
        dg.RunRequest(
            run_key=f"compact-{name}-v{manifest.version}",
            partition_key=name,
            tags=run_tags("schedule"),
            run_config=run_config(
                DatasetConfig(
                    operation="compact",
                    target_file_mb=policy.compaction_target_mb,
                    sort_by=policy.compaction_sort_keys.get(name, []),
                )
            ),
        )
        for name, manifest in latest_manifests(instance).items()
        if len(manifest.objects) >= policy.compaction_min_objects
    ]


def build_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    """The schedules, on the cron expressions the settings give."""

    @dg.schedule(
        job=compaction_job,
        cron_schedule=settings.compaction_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Compact every dataset whose object list has grown past the threshold.",
    )
    def compaction_schedule(
        context: dg.ScheduleEvaluationContext, policy: LakehousePolicy
    ) -> list[dg.RunRequest] | dg.SkipReason:
        requests = compaction_requests(context.instance, policy)
        return requests or dg.SkipReason("no dataset has enough objects to compact")

    cleanup_schedule = dg.ScheduleDefinition(
        name="cleanup_schedule",
        job=cleanup_job,
        cron_schedule=settings.cleanup_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Delete what retention allows (see cleanup_job).",
    )
    return [compaction_schedule, cleanup_schedule]
