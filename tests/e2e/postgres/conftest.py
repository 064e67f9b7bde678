"""A real stack with its Postgres endpoint, and a dataset of every type the README lists,
for the tests of the endpoint through real clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devstack.instance import PROJECT_ROOT
from devstack.ports import free_port
from devstack.stack import Stack
from tests.e2e.conftest import ONE_OF_EACH, create_token, http, start_stack, wait_for_ingest

# Each type of the README's list, and NULLs (the last row), as the CSV reader infers them.
TYPED_CSV = (
    "id,amount,ratio,day,at,ok,label\n"
    "1,12.50,1.5e3,2024-01-02,2024-01-02 03:04:05.123456,true,alpha\n"
    '2,-0.01,-2.25e-3,1999-12-31,1999-12-31 23:59:59,false,"béta, ""quoted"""\n'
    "3,,,,,,\n"
).encode()
TYPES = {
    "id": "BIGINT",
    "amount": "DECIMAL(18,2)",
    "ratio": "DOUBLE",
    "day": "DATE",
    "at": "TIMESTAMP",
    "ok": "BOOLEAN",
    "label": "VARCHAR",
}
ROWS: list[tuple[Any, ...]] = [
    (1, Decimal("12.50"), 1500.0, date(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5, 123456), True,
     "alpha"),
    (2, Decimal("-0.01"), -0.00225, date(1999, 12, 31), datetime(1999, 12, 31, 23, 59, 59), False,
     'béta, "quoted"'),
    (3, None, None, None, None, None, None),
]  # fmt: skip
SELECT_TYPED = 'SELECT id, amount, ratio, day, "at", ok, label FROM typed ORDER BY id'
PSQL = PROJECT_ROOT / ".venv" / "tools" / "psql"
JDBC_JAR = PROJECT_ROOT / ".venv" / "tools" / "postgresql-jdbc.jar"


def ingest(stack: Stack, name: str, body: bytes) -> dict[str, Any]:
    response = http.post(
        f"{stack.api_url}/v1/ingest", params={"name": name}, content=body, timeout=60
    )
    assert response.status_code == 202, response.text
    receipt = wait_for_ingest(stack.api_url, response.json()["ingest_id"])
    assert receipt["status"] == "materialized", receipt
    return receipt


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("postgres"), pg_port=free_port(), **ONE_OF_EACH)
    try:
        receipt = ingest(stack, "typed", TYPED_CSV)
        inferred = {c["name"]: c["type"] for c in receipt["inferred_schema"]["columns"]}
        assert inferred == TYPES
        ingest(stack, "secret_sales", b"id,amount\n1,9.99\n")
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def reader_token(stack: Stack) -> str:
    """A reader granted `typed` only (not `secret_sales`)."""
    return create_token(stack, "analyst", "reader", datasets=["typed"])


def dsn(stack: Stack, token: str, **options: str) -> str:
    extra = "".join(f" {k}={v}" for k, v in options.items())
    return (
        f"host=127.0.0.1 port={stack.settings.pg_port} user=analyst dbname=lakehouse "
        f"password={token}{extra}"
    )


def url(stack: Stack, token: str, scheme: str = "postgresql") -> str:
    return f"{scheme}://analyst:{token}@127.0.0.1:{stack.settings.pg_port}/lakehouse"


def psql_env(stack: Stack, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(stack.settings.pg_port),
        "PGUSER": "analyst",
        "PGDATABASE": "lakehouse",
        "PGPASSWORD": token,
        "PGCONNECT_TIMEOUT": "10",
    }


def jdbc_probe() -> Path:
    return Path(__file__).with_name("JdbcProbe.java")
