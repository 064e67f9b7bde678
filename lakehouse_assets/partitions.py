import dagster as dg

DATASETS_PARTITIONS = "datasets"

# One partition per dataset name; the ingest sensor adds them as uploads arrive.
dataset_partitions_def = dg.DynamicPartitionsDefinition(name=DATASETS_PARTITIONS)
