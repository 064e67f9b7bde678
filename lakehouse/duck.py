"""DuckDB set-up shared by the conversion and the query API: httpfs and the S3 secret.

httpfs is loaded from the `duckdb-extension-httpfs` wheel; DuckDB never downloads anything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_httpfs

from lakehouse.settings import S3Config


def httpfs_path() -> Path:
    return extension_path("httpfs", duckdb_extension_httpfs.__file__)


def extension_path(name: str, package_file: str) -> Path:
    """The extension `name` that its `duckdb-extension-<name>` wheel (whose `__init__` is at
    `package_file`) carries for this DuckDB."""
    folder = Path(package_file).parent / "extensions" / f"v{duckdb.__version__}"
    path = folder / f"{name}.duckdb_extension"
    if not path.exists():
        raise RuntimeError(
            f"no {name} extension for DuckDB {duckdb.__version__} at {path}: install "
            f"duckdb-extension-{name}=={duckdb.__version__}"
        )
    return path


def connection_config(memory_limit: str, threads: int) -> dict[str, Any]:
    """Config for every connection we open: no extension is ever fetched or auto-loaded."""
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": memory_limit,
        "threads": threads,
        # Remember objects' HEAD answers: dataset objects are written once under a unique
        # key (a re-run rewrites the same rows), so each query skips a round trip per object.
        "enable_http_metadata_cache": True,
    }


def s3_connection(s3: S3Config, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A one-thread connection that reads the bucket, spilling to the temp directory: for
    the API's reads of a landed file before it is committed."""
    config = connection_config(memory_limit, 1) | {"temp_directory": tempfile.gettempdir()}
    con = duckdb.connect(config=config)
    attach_s3(con, s3)
    return con


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def attach_s3(con: duckdb.DuckDBPyConnection, s3: S3Config) -> None:
    """Load httpfs and add a secret so `s3://<bucket>/...` reads and writes reach the store."""
    con.execute(f"LOAD {sql_string(str(httpfs_path()))}")
    con.execute(
        "CREATE OR REPLACE SECRET lakehouse_s3 ("
        f" TYPE s3, KEY_ID {sql_string(s3.access_key)}, SECRET {sql_string(s3.secret_key)},"
        f" REGION {sql_string(s3.region)}, ENDPOINT {sql_string(s3.endpoint_host)},"
        f" URL_STYLE {sql_string(s3.url_style)}, USE_SSL {str(s3.use_ssl).lower()})"
    )


def parquet_source(urls: Sequence[str]) -> str:
    """`read_parquet([...])` over `urls`."""
    return f"read_parquet([{', '.join(sql_string(u) for u in urls)}])"


def conformed(
    con: duckdb.DuckDBPyConnection, sources: Sequence[str], columns: Sequence[tuple[str, str]]
) -> str:
    """SQL for the rows of the Parquet `sources` as the (name, type) `columns`: objects
    written before a dataset's columns evolved have fewer (NULL here) or narrower ones (cast:
    only widening evolutions are allowed, so no value changes)."""
    source = f"read_parquet([{', '.join(sql_string(s) for s in sources)}], union_by_name = true)"
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    select = ", ".join(
        f"CAST({sql_identifier(name) if name in present else 'NULL'} AS {type_}) "
        f"AS {sql_identifier(name)}"
        for name, type_ in columns
    )
    return f"SELECT {select} FROM {source}"
