"""POST /v1/sql: one read-only query in DuckDB over the datasets' views."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.concurrency import run_in_threadpool

from api.auth import PrincipalDep
from api.deps import EngineDep, SettingsDep
from api.limits import TimedStream
from api.query.formats import MEDIA_TYPES, format_for
from api.query.guard import MAX_SQL_CHARS

router = APIRouter(prefix="/sql", tags=["sql"])


class SqlRequest(BaseModel):
    # A misspelt field (`asof`) would otherwise read the current versions, unsaid.
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        min_length=1, max_length=MAX_SQL_CHARS, description="One SELECT; each dataset is a view."
    )
    max_rows: StrictInt | None = Field(
        None, ge=1, description="Rows to return at most (default and cap set by the server)."
    )
    as_of: dict[str, StrictInt] = Field(
        {}, description='Earlier versions to read, e.g. {"workers_500k": 3}.'
    )


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlAnswer(BaseModel):
    columns: list[SqlColumn]
    rows: list[dict[str, Any]]
    row_count: int
    truncated: bool = Field(
        description="True when the result had more rows than returned (max_rows or "
        "LAKEHOUSE_SQL_MAX_RESULT_BYTES)."
    )
    elapsed_ms: float
    datasets: dict[str, int] = Field(description="Each dataset read -> the version read.")


@router.post(
    "",
    response_model=SqlAnswer,
    responses={
        200: {"content": {media: {} for media in MEDIA_TYPES.values()}},
        400: {
            "description": "Refused statement, syntax error, unknown dataset or column, "
            "an as_of version that does not exist or a dataset the query does not read, "
            "or a query that needed more memory than one query may use."
        },
        401: {"description": "No token, or one unknown, expired or revoked."},
        403: {"description": "A dataset outside the token's grants (exists or not)."},
        503: {"description": "Every query slot of this API process is busy (Retry-After)."},
        504: {"description": "The query ran past the time limit and was stopped."},
    },
)
async def run_sql(
    body: SqlRequest,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    format: Annotated[
        str | None, Query(description="json (default), csv, ndjson, arrow or parquet")
    ] = None,
    accept: Annotated[str, Header()] = "application/json",
) -> Any:
    """Run one read-only query. JSON answers carry columns (name, DuckDB type), rows,
    row_count, truncated, elapsed_ms and the version of each dataset read; CSV, NDJSON,
    Arrow IPC and Parquet answers stream, with the versions in `X-Lakehouse-Datasets`."""
    fmt = format_for(format, accept)
    if fmt is None:
        asked = f"format {format!r}" if format else f"Accept: {accept[:100]}"
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            detail=f"unknown {asked}: use format= one of {', '.join(MEDIA_TYPES)} (or the "
            "Accept header of one)",
        )
    max_rows = min(body.max_rows or settings.sql_default_rows, settings.sql_max_rows)
    audit = request.state.audit
    audit["sql_text"] = body.sql
    if fmt == "json":
        result = await run_in_threadpool(
            engine.execute, body.sql, max_rows, body.as_of, reader=principal
        )
        audit.update(datasets=list(result.datasets), rows=result.row_count)
        return Response(result.body(), media_type=MEDIA_TYPES["json"])
    running = await run_in_threadpool(
        engine.start, body.sql, body.as_of, fmt, max_rows, reader=principal
    )
    audit["datasets"] = list(running.datasets)
    return TimedStream(
        running.chunks(audit),
        send_timeout=settings.sql_send_timeout_seconds,
        on_stall=running.close,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "X-Lakehouse-Datasets": json.dumps(running.datasets),
            "X-Lakehouse-Row-Limit": str(max_rows),
            "X-Lakehouse-Byte-Limit": str(settings.sql_max_export_bytes),
        },
    )
