"""Dagster code: the dataset asset, the ingest sensor, and the catalog they write."""
