"""Every dependency of every route runs on the event loop: FastAPI runs a plain `def`
dependency in a worker thread, a hop per request (api/deps.py). An upload took three such
hops for its parameters' checks, which do no I/O at all."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

import api.routes
from api.main import V1_DEPENDENCIES


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        assert dependency.call is not None
        yield dependency.call
        yield from _calls(dependency)


def _on_the_loop(call: Callable[..., Any]) -> bool:
    # A security scheme (HTTPBearer) is an object with an async __call__.
    function = call if inspect.isfunction(call) else type(call).__call__
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def test_every_route_dependency_is_async() -> None:
    modules = [
        importlib.import_module(f"api.routes.{found.name}")
        for found in pkgutil.iter_modules(api.routes.__path__)
    ]
    routes = [
        route
        for module in modules
        for route in module.router.routes  # every module of api/routes has its router
        if isinstance(route, APIRoute)
    ]
    assert any(r.path == "/ingest" and "POST" in (r.methods or ()) for r in routes)  # seen
    in_threads = {
        f"{sorted(route.methods or ())} {route.path}: {getattr(call, '__name__', call)}"
        for route in routes
        for call in _calls(route.dependant)
        if not _on_the_loop(call)
    }
    in_threads |= {
        f"/v1: {depends.dependency}"
        for depends in V1_DEPENDENCIES
        if depends.dependency is None or not _on_the_loop(depends.dependency)
    }
    assert not in_threads, "dependencies FastAPI would run in a worker thread"
