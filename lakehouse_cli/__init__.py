"""The `lakehouse` command (`main`): up, worker, ingest, sql, catalog, make-sample (and the
hidden config-docs, which `make docs` writes to docs/CONFIGURATION.md)."""
