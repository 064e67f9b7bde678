"""POST /v1/sql: one query in DuckDB over the datasets' views."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from api.deps import EngineDep, SettingsDep
from api.query import QueryError

router = APIRouter(prefix="/sql", tags=["sql"])


class SqlRequest(BaseModel):
    sql: str = Field(min_length=1, description="One SQL query; each dataset is a view.")
    max_rows: int | None = Field(
        None, ge=1, description="Rows to return at most (capped by the server's maximum)."
    )


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlAnswer(BaseModel):
    columns: list[SqlColumn]
    rows: list[dict[str, Any]]
    row_count: int
    truncated: bool = Field(description="True when the result had more rows than returned.")
    elapsed_ms: float


@router.post("")
def run_sql(body: SqlRequest, engine: EngineDep, settings: SettingsDep) -> SqlAnswer:
    """Run `sql` and answer with its columns (name, DuckDB type) and rows."""
    max_rows = min(body.max_rows or settings.sql_max_rows, settings.sql_max_rows)
    try:
        result = engine.execute(body.sql, max_rows)
    except QueryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    return SqlAnswer(
        columns=[SqlColumn(**c) for c in result.columns],
        rows=jsonable_encoder(result.rows),
        row_count=len(result.rows),
        truncated=result.truncated,
        elapsed_ms=result.elapsed_ms,
    )
