"""The Postgres endpoint's settings group (lakehouse/settings.py), each read from its
`LAKEHOUSE_*` variable like the others."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from lakehouse.state_secrets import LOOPBACK


class PgEndpoint(BaseModel):
    """Where the Postgres endpoint listens, and its TLS certificate."""

    pg_host: str = Field(
        "127.0.0.1",
        description="Address the Postgres endpoint listens on. Beyond loopback it needs "
        "pg_tls_cert_file and pg_tls_key_file (a token is the password).",
    )
    pg_port: int = Field(
        5433,
        ge=0,
        le=65535,
        description="Port of the Postgres endpoint `lakehouse up` starts beside the API "
        "(psql, JDBC, BI tools connect with a token as password); 0: it is not started.",
    )
    pg_workers: int = Field(
        2,
        ge=1,
        description="Worker processes of the Postgres endpoint, accepting on its one port "
        "(as api_workers: the protocol runs in Python, one core per worker).",
    )
    pg_max_concurrent: int = Field(
        1,
        ge=1,
        description="Queries running at once per endpoint worker, each in its own query "
        "process; more wait up to sql_queue_seconds, then get SQLSTATE 53300.",
    )
    pg_tls_cert_file: str = Field(
        "",
        description="PEM certificate chain of the Postgres endpoint; with pg_tls_key_file, "
        "clients must connect with TLS (sslmode=require or verify-full), or are refused.",
    )
    pg_tls_key_file: str = Field("", description="PEM private key of pg_tls_cert_file.")

    @model_validator(mode="after")
    def _tls_beyond_loopback(self) -> PgEndpoint:
        if bool(self.pg_tls_cert_file) != bool(self.pg_tls_key_file):
            raise ValueError(
                "set both LAKEHOUSE_PG_TLS_CERT_FILE and LAKEHOUSE_PG_TLS_KEY_FILE, or neither"
            )
        if self.pg_port and self.pg_host not in LOOPBACK and not self.pg_tls_cert_file:
            raise ValueError(
                f"the Postgres endpoint would listen on {self.pg_host} without TLS, and "
                "tokens would cross the network in the clear: set LAKEHOUSE_PG_TLS_CERT_FILE "
                "and LAKEHOUSE_PG_TLS_KEY_FILE, or LAKEHOUSE_PG_HOST=127.0.0.1"
            )
        return self
