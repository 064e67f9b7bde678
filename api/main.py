"""The FastAPI app: routers under /v1, health at /health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dagster as dg
from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from api import errors
from api.deps import close_engines, get_engine
from api.routes import catalog, health, ingest, sql
from api.upload.slots import UploadSlots
from lakehouse.settings import get_settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Start the query processes now (about a second) rather than in the first query.
    settings = app.dependency_overrides.get(get_settings, get_settings)()
    if settings.sql_prewarm and settings.resolved_dagster_home.is_dir():
        try:
            await run_in_threadpool(get_engine, settings)
        except (OSError, dg.DagsterError):
            # /v1/sql tries again at its first query and answers what went wrong.
            log.exception("the query engine did not start")
    yield
    close_engines()  # the query processes would exit with us anyway; this is tidier


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="Lakehouse API",
        description="Drop CSV files, query them as Parquet datasets with SQL.",
        version="0.1.0",
    )
    v1 = APIRouter(prefix="/v1")
    for module in (ingest, sql, catalog):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(health.router)
    errors.register(app)
    app.state.upload_slots = UploadSlots()
    return app


app = create_app()
