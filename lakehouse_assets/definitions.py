import dagster as dg

from lakehouse.settings import get_settings
from lakehouse_assets.assets import dataset
from lakehouse_assets.jobs import ingest_job
from lakehouse_assets.resources import build_resources
from lakehouse_assets.sensors import ingest_sensor


@dg.definitions
def defs() -> dg.Definitions:
    # Built when Dagster loads the code location, not at import: settings come from the
    # environment of the process that loads it.
    return dg.Definitions(
        assets=[dataset],
        jobs=[ingest_job],
        sensors=[ingest_sensor],
        resources=build_resources(get_settings()),
    )
