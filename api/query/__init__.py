"""Queries as the API runs them: the guard over untrusted SQL (`guard`, `allowlist`), the
engine and its views of the catalog (`engine`), the memory-capped query processes
(`processes` in the API process, `process` the program each runs), and answer formats."""
