"""One settings object for the API, the Dagster code and the stack launcher.

Every field is read from a `LAKEHOUSE_*` environment variable when the settings are first
asked for (never at import time); the defaults run the local stack as-is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakehouse.settings_limits import Limits, Maintenance, QueryMemory, megabytes, query_memory
from lakehouse.settings_pg import PgEndpoint
from lakehouse.state_secrets import (
    EXAMPLE_SECRETS,
    GENERATED_SECRETS,
    LOOPBACK,
    ensure_generated_secrets,
    read_generated_secrets,
)


class S3Config(BaseModel, frozen=True):
    """How to reach the object store: plain S3 API, nothing server-specific."""

    endpoint: str
    bucket: str
    region: str
    access_key: str
    secret_key: str
    url_style: Literal["path", "vhost"]

    @property
    def endpoint_host(self) -> str:
        """`host:port` of the endpoint, as DuckDB's S3 secret wants it."""
        return urlsplit(self.endpoint).netloc

    @property
    def use_ssl(self) -> bool:
        return urlsplit(self.endpoint).scheme == "https"


class _Storage(BaseModel):
    """Where things are kept: the object store, the local state, the instance's database."""

    s3_endpoint: str = Field("http://127.0.0.1:8333", description="S3 API endpoint URL.")
    s3_bucket: str = Field("lakehouse", description="Bucket holding landing files and datasets.")
    s3_region: str = Field("us-east-1", description="Region sent when signing requests.")
    s3_access_key: str = Field("lakehouse", description="Read-write access key.")
    s3_secret_key: str = Field(
        "",
        description="Read-write secret key; empty: the one generated at first start in "
        "<state_dir>/secrets.json.",
    )
    s3_url_style: Literal["path", "vhost"] = Field(
        "path", description="'path' for MinIO/SeaweedFS, 'vhost' for AWS virtual hosts."
    )
    s3_query_access_key: str = Field(
        "lakehouse-query",
        description="Key the SQL engine reads with: read-only on datasets/ (empty: the "
        "read-write key).",
    )
    s3_query_secret_key: str = Field(
        "", description="Its secret; empty: generated at first start in <state_dir>/secrets.json."
    )

    state_dir: Path = Field(
        Path(".lakehouse"), description="Local state: S3 server data, Dagster home, logs."
    )
    dagster_home: Path | None = Field(
        None,
        description="Dagster instance directory; unset: <state_dir>/dagster. `lakehouse up` "
        "and `lakehouse worker` set DAGSTER_HOME to it for the processes they start.",
    )

    postgres_url: str = Field(
        "",
        description="Dagster instance storage in Postgres, e.g. "
        "postgresql://user:pass@host:5432/dagster, and the Iceberg catalog's tables in the "
        "same database; empty: SQLite under the Dagster home, and the Iceberg catalog in "
        "<state_dir>/iceberg/catalog.db.",
    )


class _Processes(BaseModel):
    """The processes and how they reach one another: broker, run workers, Dagster, API."""

    broker_url: str = Field(
        "",
        description="Celery broker the run workers take runs from (redis://… or amqp://…); "
        "also their result backend unless broker_backend_url is set. Empty: `lakehouse up` "
        "starts its own Redis on 127.0.0.1:<broker_port>.",
    )
    broker_backend_url: str = Field(
        "", description="Celery result backend (run workers' task states); empty: broker_url."
    )
    broker_port: int = Field(6390, description="Port of the Redis `lakehouse up` starts.")
    broker_password: str = Field(
        "",
        description="Password of the Redis `lakehouse up` starts; empty: generated at first "
        "start in <state_dir>/secrets.json.",
    )
    workers: int = Field(
        2,
        ge=0,
        description="Run workers `lakehouse up` starts (each runs one run at a time); 0: none "
        "(workers run elsewhere).",
    )
    max_concurrent_runs: int = Field(
        0,
        ge=0,
        description="Runs in progress at once across all workers; 0: `workers`. Raise it when "
        "workers on other machines serve the same broker.",
    )

    push_runs: bool = Field(
        True,
        description="The API launches each ingest's run through the webserver's "
        "GraphQL API at once, instead of waiting for the sensor (which stays the safety net).",
    )
    dagster_webserver_url: str = Field(
        "", description="Where the API pushes runs; empty: http://127.0.0.1:<webserver_port>."
    )

    api_host: str = Field(
        "127.0.0.1",
        description="Address the API listens on (uvicorn --host); with api_port, the API URL "
        "the `lakehouse` commands use by default.",
    )
    api_port: int = Field(8000, description="Port the API listens on (uvicorn --port).")
    api_workers: int = Field(2, ge=1, description="API worker processes (uvicorn --workers).")
    webserver_port: int = Field(
        3000, description="Port of the Dagster webserver (the UI) `lakehouse up` starts."
    )
    code_server_port: int = Field(
        0,
        ge=0,
        description="Port of the Dagster code server `lakehouse up` starts, from which the "
        "daemon and the webserver load the definitions; 0: a free port.",
    )


class _Ingest(BaseModel):
    """Uploads, the runs that apply them, and the maintenance of datasets."""

    ingest_part_bytes: int = Field(
        8 * 1024 * 1024, ge=5 * 1024 * 1024, description="Multipart upload part size."
    )
    ingest_parts_in_flight: int = Field(
        4, ge=1, description="Parts of one upload sent to the store at once."
    )
    sample_rows: int = Field(2000, ge=10, description="Rows read to infer a CSV's schema.")
    max_columns: int = Field(
        4096, ge=1, description="Most columns a dataset may have: a file with more gets 400."
    )
    max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="Largest upload, counted after decompression."
    )
    max_concurrent_uploads: int = Field(
        4,
        ge=1,
        description="Large uploads landing their bytes at once per API process: their buffers "
        "(ingest_part_bytes x (ingest_parts_in_flight + 2) each) are the process's budget, "
        "where a plain body with a Content-Length counts for its length (at least 1 MiB), so "
        "a burst of small files lands at once. One waiting for its run holds none; past the "
        "budget, 503 with Retry-After.",
    )
    max_reject_share: float = Field(
        0.01, ge=0, le=1, description="Share of unparseable rows above which an ingest fails."
    )
    ingest_wait_seconds: float = Field(
        300,
        ge=0,
        description="Longest an ingest with wait=true waits for its run, and the most "
        "wait=<seconds> may ask for.",
    )

    batch_max_ingests: int = Field(
        1000, ge=1, description="Most pending ingests one run applies as one version."
    )
    batch_max_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1,
        description="Most bytes of pending ingests one run applies (at least one ingest).",
    )
    compaction_max_objects: int = Field(
        64,
        ge=2,
        description="A run that leaves a dataset with more objects than this merges its small "
        "ones as part of the same version.",
    )


class _Sql(BaseModel):
    """/v1/sql: limits of a query and of the query processes."""

    sql_default_rows: int = Field(
        10_000, ge=1, description="Rows a /v1/sql answer returns unless max_rows asks otherwise."
    )
    sql_max_rows: int = Field(
        1_000_000, ge=1, description="Most rows a request may ask for with max_rows."
    )
    sql_timeout_seconds: float = Field(
        30,
        gt=0,
        description="Time limit of one query until its first rows are out (JSON: until the "
        "whole answer is collected); a streamed export then gets this long per batch.",
    )
    sql_prewarm: bool = Field(
        True,
        description="Start each API process's query processes with it (about a second), "
        "rather than at its first query.",
    )
    sql_max_concurrent: int = Field(
        2,
        ge=1,
        description="Queries running at once per API process, each in its own query "
        "process; more wait up to sql_queue_seconds, then get 503 with Retry-After.",
    )
    sql_queue_seconds: float = Field(
        2, ge=0, description="How long a query waits for a free query process before a 503."
    )
    sql_process_memory_mb: int = Field(
        1536,
        ge=256,
        description="Most address space a query process may grow by beyond its start (its "
        "share of sql_memory_budget_mb may be less): a query past it fails with 'out of "
        "memory' (400) and nothing else is touched. Its DuckDB memory_limit is kept at 3/4 "
        "of it or below.",
    )
    sql_max_spill_mb: int = Field(
        4096,
        ge=0,
        description="Disk a query process's DuckDB may spill to (under <state_dir>/query-spill).",
    )
    sql_max_result_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Most bytes of rows in a JSON answer (held in memory while it is built); "
        "past it the rows are cut and `truncated` is true.",
    )
    sql_max_export_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1024,
        description="Most bytes of a streamed (csv, ndjson, arrow, parquet) answer; past it "
        "the stream ends cleanly with an in-band truncation notice.",
    )
    duckdb_memory_limit: str = Field(
        "1GB",
        description="DuckDB memory_limit per process (query processes: at most 3/4 of "
        "their share of sql_memory_budget_mb).",
    )
    duckdb_threads: int = Field(2, ge=1, description="DuckDB threads per process.")

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _a_size(cls, size: str) -> str:
        megabytes(size)  # refused now, not at the first query
        return size


class _Access(BaseModel):
    """Who may do what: tokens, and the audit trail of what they did."""

    token_cache_seconds: float = Field(
        2,
        ge=0,
        le=5,
        description="How long an API process trusts what it last read about a token: a "
        "revoked token stops working on every API process within this many seconds.",
    )
    audit_flush_seconds: float = Field(
        1,
        gt=0,
        description="An API process writes its audit records to the store at least this "
        "often (and whenever audit_batch_records are waiting): a crash loses at most that.",
    )
    audit_batch_records: int = Field(
        500, ge=1, description="Audit records an API process writes as one object at most."
    )


# The groups in reverse: pydantic lists the fields of the last base first.
class Settings(
    PgEndpoint, Maintenance, Limits, _Access, _Sql, _Ingest, _Processes, _Storage, BaseSettings
):
    """Every setting, each read from its `LAKEHOUSE_*` variable (docs/CONFIGURATION.md)."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", extra="ignore")

    @model_validator(mode="after")
    def _fill_generated_secrets(self) -> Settings:
        """Secrets left empty take the values generated for this state directory."""
        missing = [name for name in GENERATED_SECRETS if not getattr(self, name)]
        if missing:
            stored = read_generated_secrets(self.state_dir)
            for name in missing:
                if stored.get(name):
                    setattr(self, name, stored[name])
        return self

    def with_generated_secrets(self) -> Settings:
        """These settings, with the secrets still empty generated (once per state directory,
        kept in <state_dir>/secrets.json, readable by its owner only)."""
        missing = [name for name in GENERATED_SECRETS if not getattr(self, name)]
        if not missing:
            return self
        stored = ensure_generated_secrets(self.state_dir)
        return self.model_copy(update={name: stored[name] for name in missing})

    def refuse_example_secrets(self) -> None:
        """Refuse the example secrets earlier versions printed, unless every address this
        deployment serves or uses is loopback."""
        used = [n for n in GENERATED_SECRETS if getattr(self, n) in EXAMPLE_SECRETS]
        hosts = [self.api_host, urlsplit(self.s3_endpoint).hostname or ""]
        exposed = [h for h in hosts if h not in LOOPBACK]
        if used and exposed:
            variables = ", ".join(f"LAKEHOUSE_{n.upper()}" for n in used)
            raise ValueError(
                f"{variables} hold the well-known example secret from earlier READMEs while "
                f"this deployment is reachable beyond loopback ({', '.join(exposed)}): set "
                "secrets of your own, or leave them empty to have them generated"
            )

    def s3(self) -> S3Config:
        return S3Config(
            endpoint=self.s3_endpoint,
            bucket=self.s3_bucket,
            region=self.s3_region,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            url_style=self.s3_url_style,
        )

    def query_s3(self) -> S3Config:
        """How the SQL engine reaches the store: with the read-only key, if there is one."""
        if not self.s3_query_access_key:
            return self.s3()
        return self.s3().model_copy(
            update={"access_key": self.s3_query_access_key, "secret_key": self.s3_query_secret_key}
        )

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        auth = f":{quote(self.broker_password, safe='')}@" if self.broker_password else ""
        return f"redis://{auth}127.0.0.1:{self.broker_port}/0"

    @property
    def resolved_limits_url(self) -> str:
        if self.limits_url:
            return self.limits_url
        broker = self.resolved_broker_url
        return broker if broker.startswith(("redis://", "rediss://")) else "memory://"

    @property
    def resolved_backend_url(self) -> str:
        return self.broker_backend_url or self.resolved_broker_url

    @property
    def query_memory(self) -> QueryMemory:
        return query_memory(self)

    @property
    def run_slots(self) -> int:
        return self.max_concurrent_runs or max(self.workers, 1)

    @property
    def resolved_webserver_url(self) -> str:
        return self.dagster_webserver_url or f"http://127.0.0.1:{self.webserver_port}"

    @property
    def resolved_dagster_home(self) -> Path:
        return (self.dagster_home or self.state_dir / "dagster").absolute()

    @property
    def iceberg_catalog_url(self) -> str:
        """Where the Iceberg SQL catalog lives: beside the Dagster instance (its Postgres
        database, else SQLite under the state directory)."""
        if self.postgres_url:
            return self.postgres_url
        return f"sqlite:///{(self.state_dir / 'iceberg' / 'catalog.db').absolute()}"


def sqlalchemy_url(url: str) -> str:
    """A database URL as SQLAlchemy 2.1 wants it: a bare postgresql:// would mean psycopg 3,
    and psycopg2 is what is installed (dagster-postgres uses it)."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", url)


@lru_cache
def get_settings() -> Settings:
    return Settings()
