"""The Postgres endpoint: psql, JDBC, psycopg, asyncpg, ADBC and BI tools query the
datasets over the PostgreSQL wire protocol, with a token as password, under the same
guard, grants, limits and query processes as `/v1/sql` (docs/API.md, "Postgres").

    server    the process (`python -m api.pgwire`): listen, TLS, token auth
    workers   its worker processes on one port, and cancel requests between them
    context   what a worker's sessions share: the engine, query slots, audit, limits
    session   one connection: its token, settings, catalog, statements
    commands  what a session answers itself: SET/RESET, set_config, cursors, catalog queries
    settings  which settings a client may set, to what, and what Postgres answers otherwise
    copy_out  COPY (query) TO STDOUT
    catalog   the emulated pg_catalog and information_schema (catalog_tables, catalog_rows)
    results   a running query's answer as rows, and its audit record
    types     DuckDB types as Postgres types, parameters
    errors    the product's errors as SQLSTATEs
    compat    what is used of pg_mimic beyond its documented API
"""
