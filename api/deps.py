"""Dependencies: settings, and the long-lived clients built from them (one per process).

Each is an `async def`, found on the event loop: FastAPI runs a plain `def` dependency in
a worker thread, a hop per request that a small query feels. What takes a while to make (a
boto3 client, a Dagster instance, the query processes) is made in a thread the first time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Generic, TypeVar

import dagster as dg
from fastapi import Depends, FastAPI, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from api.query.engine import QueryEngine
from lakehouse.ingest.log import LogTails
from lakehouse.publish.catalog import CurrentManifests, latest_manifest
from lakehouse.runs import Pusher
from lakehouse.settings import S3Config, Settings, get_settings
from lakehouse.store import ObjectStore

K = TypeVar("K")
V = TypeVar("V")


def app_settings(app: FastAPI) -> Settings:
    """The app's settings: `get_settings()`, or what a test put in its place (through
    `app.dependency_overrides[get_settings]`)."""
    settings: Settings = app.dependency_overrides.get(get_settings, get_settings)()
    return settings


async def request_settings(request: Request) -> Settings:
    return app_settings(request.app)


SettingsDep = Annotated[Settings, Depends(request_settings)]


class _Kept(Generic[K, V]):
    """One value per key, made once and kept for the process's life: `kept(key)` from any
    thread, `await kept.soon(key)` on the event loop, which makes it in a worker thread
    the first time (a boto3 client, a Dagster instance: slow to make) and after that only
    finds it."""

    def __init__(self, make: Callable[[K], V]) -> None:
        self._make = make
        self._made: dict[K, V] = {}
        self._lock = threading.Lock()

    def __call__(self, key: K) -> V:
        made = self._made.get(key)
        if made is None:
            with self._lock:  # made once, however many threads ask first
                made = self._made.get(key)
                if made is None:
                    made = self._made[key] = self._make(key)
        return made

    async def soon(self, key: K) -> V:
        made = self._made.get(key)
        return made if made is not None else await run_in_threadpool(self, key)


_store: _Kept[S3Config, ObjectStore] = _Kept(ObjectStore)


@lru_cache
def log_tails(store: ObjectStore) -> LogTails:
    """What this process knows of the store's ingest logs (see `LogTails`)."""
    return LogTails()


@lru_cache
def current_manifests(instance: dg.DagsterInstance, store: ObjectStore) -> CurrentManifests:
    """The process's cache of each dataset's latest manifest (see `CurrentManifests`)."""
    return CurrentManifests(store, lambda name: latest_manifest(instance, name))


_instance: _Kept[Path, dg.DagsterInstance] = _Kept(
    lambda home: dg.DagsterInstance.from_config(str(home))
)


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
    return await _store.soon(settings.s3())


async def get_instance(settings: SettingsDep) -> dg.DagsterInstance:
    home = settings.resolved_dagster_home
    if not home.is_dir():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"Dagster home {home} does not exist: start the stack (make up) or set "
            "LAKEHOUSE_DAGSTER_HOME to the instance the Dagster daemon uses",
        )
    return await _instance.soon(home)


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
