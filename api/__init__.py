"""The HTTP API: ingest, SQL, catalog, health."""
