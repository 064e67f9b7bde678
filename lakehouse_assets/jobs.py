import dagster as dg

from lakehouse_assets.assets import dataset

# Tags every run of the dataset asset carries: the dataset tag is what dagster.yaml's tag
# concurrency limit keys on, so runs for one dataset never overlap.
DATASET_TAG = "lakehouse/dataset"
INGEST_TAG = "lakehouse/ingest_id"
LAUNCHED_BY_TAG = "lakehouse/launched_by"  # "api" (pushed) or "sensor"

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=[dataset],
    description="Materialize one ingest: landed CSV -> Parquet, added to its dataset. "
    "Started by ingest_sensor, one run per upload.",
    # One asset per run: a process per step would only add start-up time.
    executor_def=dg.in_process_executor,
)

compaction_job = dg.define_asset_job(
    "compaction_job",
    selection=[dataset],
    description="Rewrite a dataset's objects into as few files as the target size allows "
    "(same rows, new version). Started by compaction_schedule; can be launched by hand.",
    config={"ops": {"dataset": {"config": {"operation": "compact"}}}},
    executor_def=dg.in_process_executor,
)

rebuild_job = dg.define_asset_job(
    "rebuild_job",
    selection=[dataset],
    description="Convert every source file of a dataset again (e.g. after inference rules "
    "change): the same rows for the same sources, as a new version.",
    config={"ops": {"dataset": {"config": {"operation": "rebuild"}}}},
    executor_def=dg.in_process_executor,
)
