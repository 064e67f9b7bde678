"""Reliance on behaviour of Dagster and Celery that is not their public API, fenced here
(`compat`), each with its COMPAT note and a contract test."""
