"""CSV: its text (`text`), dialect (`dialect`, `options`, `sniff`), records (`records`),
column types (`schema`), and its exact conversion to Parquet (`convert`, with `accounting`
and `widen`)."""
