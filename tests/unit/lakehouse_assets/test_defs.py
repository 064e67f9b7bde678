import dagster as dg

from lakehouse_assets.definitions import defs


def test_definitions_load_and_resolve() -> None:
    definitions = defs()
    assert isinstance(definitions, dg.Definitions)
    job = definitions.resolve_job_def("ingest_job")
    assert job.partitions_def is not None
    sensor = definitions.resolve_sensor_def("ingest_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "ingest_job"
    assert definitions.resolve_assets_def("dataset").partitions_def is not None
    for schedule in definitions.schedules or []:
        definitions.resolve_schedule_def(schedule.name)  # type: ignore[union-attr]
    assert set(definitions.resources or {}) == {"s3", "duckdb", "policy", "iceberg"}
    for job in ("compaction_job", "rebuild_job", "cleanup_job"):
        assert definitions.resolve_job_def(job).description
    for name in ("compaction_schedule", "cleanup_schedule"):
        schedule = definitions.resolve_schedule_def(name)
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        assert schedule.description
