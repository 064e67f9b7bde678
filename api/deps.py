"""Dependencies: settings, and the long-lived clients built from them (one per process).

Each is an `async def`, found on the event loop: FastAPI runs a plain `def` dependency in
a worker thread, a hop per request that a small query feels. What takes a while to make (a
boto3 client, a Dagster instance, the query processes) is made in a thread the first time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, TypeVar

import dagster as dg
from fastapi import Depends, FastAPI, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from api.query.engine import QueryEngine
from lakehouse.ingest.log import LogTails
from lakehouse.publish.catalog import CurrentManifests, latest_manifest
from lakehouse.runs import Pusher
from lakehouse.settings import S3Config, Settings, get_settings
from lakehouse.store import ObjectStore

T = TypeVar("T")


def app_settings(app: FastAPI) -> Settings:
    """The app's settings: `get_settings()`, or what a test put in its place (through
    `app.dependency_overrides[get_settings]`)."""
    settings: Settings = app.dependency_overrides.get(get_settings, get_settings)()
    return settings


async def request_settings(request: Request) -> Settings:
    return app_settings(request.app)


SettingsDep = Annotated[Settings, Depends(request_settings)]


# What `_made` made: (maker, key) -> the value.
_made_already: dict[tuple[Callable[..., Any], Hashable], Any] = {}


async def _made(make: Callable[[Any], T], key: Hashable) -> T:
    """`make(key)` (an lru_cache'd maker): in a worker thread the first time, then found
    here without one."""
    made = _made_already.get((make, key))
    if made is None:
        made = _made_already[make, key] = await run_in_threadpool(make, key)
    return made


@lru_cache
def _store(config: S3Config) -> ObjectStore:
    return ObjectStore(config)


@lru_cache
def log_tails(store: ObjectStore) -> LogTails:
    """What this process knows of the store's ingest logs (see `LogTails`)."""
    return LogTails()


@lru_cache
def current_manifests(instance: dg.DagsterInstance, store: ObjectStore) -> CurrentManifests:
    """The process's cache of each dataset's latest manifest (see `CurrentManifests`)."""
    return CurrentManifests(store, lambda name: latest_manifest(instance, name))


@lru_cache
def _instance(dagster_home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(dagster_home))


@lru_cache
def pusher(instance: dg.DagsterInstance, webserver_url: str) -> Pusher:
    """The process's run pusher (its threads live as long as the process)."""
    return Pusher(instance, webserver_url)


# One engine (and so one pool of query processes) per process and settings.
_engines: dict[str, QueryEngine] = {}
_engines_lock = threading.Lock()
# The engine of each settings object seen (held, so that its id stays its own): a request
# finds its engine without writing its settings as JSON.
_engine_of: dict[int, tuple[Settings, QueryEngine]] = {}


def _engine(settings_json: str) -> QueryEngine:
    with _engines_lock:
        engine = _engines.get(settings_json)
        if engine is None:
            settings = Settings.model_validate_json(settings_json)
            engine = QueryEngine(settings, _instance(settings.resolved_dagster_home))
            _engines[settings_json] = engine
        return engine


def close_engines() -> None:
    """Stop every engine's query processes (at shutdown; tests, between tests)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
        _engine_of.clear()
    for engine in engines:
        engine.close()


def store_of(settings: Settings) -> ObjectStore:
    """The process's object store client for `settings`."""
    return _store(settings.s3())


async def get_store(settings: SettingsDep) -> ObjectStore:
    return await _made(_store, settings.s3())


async def get_instance(settings: SettingsDep) -> dg.DagsterInstance:
    home = settings.resolved_dagster_home
    if not home.is_dir():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"Dagster home {home} does not exist: start the stack (make up) or set "
            "LAKEHOUSE_DAGSTER_HOME to the instance the Dagster daemon uses",
        )
    return await _made(_instance, home)


def get_engine(settings: Settings) -> QueryEngine:
    engine = _known_engine(settings)
    if engine is None:
        engine = _engine(settings.model_dump_json())
        with _engines_lock:
            _engine_of[id(settings)] = (settings, engine)
    return engine


async def request_engine(settings: SettingsDep) -> QueryEngine:
    """A request's engine: made in a thread the first time (it starts the query
    processes)."""
    engine = _known_engine(settings)
    return engine if engine is not None else await run_in_threadpool(get_engine, settings)


def _known_engine(settings: Settings) -> QueryEngine | None:
    known = _engine_of.get(id(settings))
    return known[1] if known is not None and known[0] is settings else None


StoreDep = Annotated[ObjectStore, Depends(get_store)]
InstanceDep = Annotated[dg.DagsterInstance, Depends(get_instance)]
EngineDep = Annotated[QueryEngine, Depends(request_engine)]
