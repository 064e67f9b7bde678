import dagster as dg

from lakehouse_assets.assets import dataset

# Tags every ingest run carries: the dataset tag is what dagster.yaml's tag concurrency
# limit keys on, so runs for one dataset never overlap.
DATASET_TAG = "lakehouse/dataset"
INGEST_TAG = "lakehouse/ingest_id"

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=[dataset],
    description="Materialize one ingest: landed CSV -> Parquet, appended to its dataset.",
    # One asset per run: a process per step would only add start-up time.
    executor_def=dg.in_process_executor,
)
