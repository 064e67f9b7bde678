"""Jobs over the dataset asset. Each is one way to ask for the next version, and every run
goes through the same path in the asset (see `lakehouse.runs` for the contract)."""

import dagster as dg

from lakehouse.runs import INGEST_JOB, DatasetConfig, run_config
from lakehouse_assets.assets import dataset

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=[dataset],
    description="Apply a dataset's pending ingests, in order, as one new version. Started by "
    "the API and by ingest_sensor.",
    config=run_config(DatasetConfig(only_if_pending=True)),
    # One asset per run: a process per step would only add start-up time.
    executor_def=dg.in_process_executor,
)

compaction_job = dg.define_asset_job(
    "compaction_job",
    selection=[dataset],
    description="Rewrite a dataset's objects into as few files as the target size allows "
    "(same rows, new version). Started by compaction_schedule; can be launched by hand.",
    config=run_config(DatasetConfig(operation="compact")),
    executor_def=dg.in_process_executor,
)

rebuild_job = dg.define_asset_job(
    "rebuild_job",
    selection=[dataset],
    description="Convert every source file of a dataset again (e.g. after inference rules "
    "change): the same rows for the same sources, as a new version.",
    config=run_config(DatasetConfig(operation="rebuild")),
    executor_def=dg.in_process_executor,
)
