"""Stage four: a committed version, published. The catalog read model (`catalog`: the
Dagster instance's materializations are the catalog of record), the Iceberg table of each
dataset (`iceberg`), and what the UI shows of a version (`profile`)."""
