import dagster as dg

from lakehouse.runs import DATASETS_PARTITIONS

# One partition per dataset name, added by the API and the sensor as uploads arrive.
dataset_partitions_def = dg.DynamicPartitionsDefinition(name=DATASETS_PARTITIONS)
