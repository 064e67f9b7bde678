"""Shared core of the lakehouse, below both `lakehouse_assets` (the Dagster definitions)
and `api` (FastAPI): settings, object store, CSV schema, conversion, the ingest protocol
(`ingests`, `commits`, `writer`), and the read model both sides share (`catalog`,
`ingest_status`, `runs`, the run contract).

Nothing here imports FastAPI or the asset definitions; the read model uses Dagster's
public API to read the instance.
"""
