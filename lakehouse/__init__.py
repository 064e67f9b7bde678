"""The core of the lakehouse, below both `lakehouse_assets` (the Dagster definitions) and
`api` (FastAPI), in packages that follow a file's path: `store` (the object store and its
layout), `formats` (reading an upload), `ingest` (landing and the log), `versions` (the
next version, committed exactly once), `publish` (the catalog read model, Iceberg,
retention). Beside them: `settings`, `errors` (the one exception root), `names`,
`manifest`, `duck` (DuckDB set-up), `runs` (the run contract) and `runtime` (the
non-public Dagster and Celery behaviour we rely on, fenced).

Nothing here imports FastAPI or the asset definitions; the read model uses Dagster's
public API to read the instance.
"""
