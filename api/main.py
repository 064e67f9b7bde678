"""The FastAPI app: routers under /v1 (each request with a token, and audited), health at
/health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dagster as dg
from fastapi import APIRouter, Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from api import errors, logs
from api.audit import AuditLog, AuditMiddleware
from api.auth import authenticate
from api.deps import app_settings, close_engines, get_engine, store_of
from api.limits import RequestCaps
from api.parameters import describe_routes, known_parameters
from api.quotas import admitted, quotas
from api.routes import catalog, datasets, health, ingest, metrics, sql, tokens
from api.upload.slots import UploadSlots

log = logging.getLogger(__name__)

# Every /v1 route names its caller (401 without a live token), is admitted under the
# token's limits (429), and takes the query parameters it declares and no others
# (api/parameters.py); each checks what the caller may do where it knows the dataset.
V1_DEPENDENCIES = [Depends(authenticate), Depends(admitted), Depends(known_parameters)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Start the query processes now (about a second) rather than in the first query.
    settings = app_settings(app)
    settings.refuse_example_secrets()
    logs.configure()
    quotas(settings)  # made now, so a per-process count (memory://) is said at start-up
    describe_routes(app)
    memory = settings.query_memory
    log.info(
        "each query process may grow by %d MiB (DuckDB memory_limit %s): %s",
        memory.process_mb,
        memory.duckdb_limit,
        memory.why,
    )
    app.state.audit = AuditLog(
        store_of(settings), settings.audit_flush_seconds, settings.audit_batch_records
    )
    if settings.sql_prewarm and settings.resolved_dagster_home.is_dir():
        try:
            await run_in_threadpool(get_engine, settings)
        except (OSError, dg.DagsterError):
            # /v1/sql tries again at its first query and answers what went wrong.
            log.exception("the query engine did not start")
    yield
    close_engines()  # the query processes would exit with us anyway; this is tidier
    await run_in_threadpool(app.state.audit.close)  # its last records


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="Lakehouse API",
        description="Drop CSV files, query them as Parquet datasets with SQL.",
        version="0.1.0",
    )
    v1 = APIRouter(prefix="/v1", dependencies=V1_DEPENDENCIES)
    for module in (ingest, sql, catalog, datasets, tokens):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.add_middleware(RequestCaps)  # inside the audit: refused requests are audited too
    app.add_middleware(AuditMiddleware)
    errors.register(app)
    app.state.upload_slots = UploadSlots()
    return app


app = create_app()
