import dagster as dg

from lakehouse.settings import get_settings
from lakehouse_assets.assets import dataset
from lakehouse_assets.cleanup import cleanup_job
from lakehouse_assets.jobs import compaction_job, ingest_job, rebuild_job
from lakehouse_assets.resources import build_resources
from lakehouse_assets.schedules import build_schedules
from lakehouse_assets.sensors import ingest_sensor


@dg.definitions
def defs() -> dg.Definitions:
    # Built when Dagster loads the code location, not at import: settings come from the
    # environment of the process that loads it.
    settings = get_settings()
    return dg.Definitions(
        assets=[dataset],
        jobs=[ingest_job, compaction_job, rebuild_job, cleanup_job],
        sensors=[ingest_sensor],
        schedules=build_schedules(settings),
        resources=build_resources(settings),
        # Every job runs in its run worker's own process, including the asset job the UI's
        # Materialize launches: a run worker is a Celery pool process, which may not start
        # children (the multiprocess executor's default); one asset needs no more anyway.
        executor=dg.in_process_executor,
    )
