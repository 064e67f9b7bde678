"""Shared core of the lakehouse: settings, object store, CSV schema, conversion.

Nothing here imports Dagster or FastAPI; `lakehouse_assets` (Dagster code) and `api`
(FastAPI) both build on it.
"""
