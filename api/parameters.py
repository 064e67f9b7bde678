"""Query parameters are taken as declared, or refused: a parameter the route does not take
(a misspelt `delimeter=;`, `max_rows` sent in the URL of `/v1/sql` rather than its body),
or one it takes once sent twice (`name=a&name=b`), is a 400 naming it and what the route
takes. Otherwise it would be silently not applied.

What a route takes is read from the app's own OpenAPI description (its public schema, the
one `/docs` shows), once per route: the template there whose end is the route's own path
(a route of an included router knows only its part) and that the request's path matches."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.routing import compile_path

from lakehouse.errors import InvalidInput


@dataclass(frozen=True)
class Taken:
    """The query parameters of one route and method; `repeatable`: those that are lists."""

    names: frozenset[str]
    repeatable: frozenset[str]


async def known_parameters(request: Request) -> None:
    """A dependency of every /v1 route: 400 for a query parameter it does not take, or
    one sent more times than it takes."""
    if not request.query_params:
        return
    route = _template(request.app, request.scope["route"].path, request.url.path)
    taken = _taken(request.app, route, request.method)
    sent = Counter(name for name, _ in request.query_params.multi_items())
    unknown = sorted(set(sent) - taken.names)
    if unknown:
        takes = ", ".join(sorted(taken.names)) or "none"
        raise InvalidInput(
            f"{request.method} {route} takes no query parameter "
            f"{', '.join(map(repr, unknown))} (it takes: {takes}; see /docs)"
        )
    repeated = sorted(n for n, count in sent.items() if count > 1 and n not in taken.repeatable)
    if repeated:
        raise InvalidInput(
            f"query parameter {', '.join(map(repr, repeated))} sent more than once: send each once"
        )


def describe_routes(app: FastAPI) -> None:
    """Read the routes' paths from the app's OpenAPI description now (~50 ms, at start-up),
    not in the first request that sends a query parameter."""
    _templates(app)


def _templates(app: FastAPI) -> list[tuple[str, re.Pattern[str]]]:
    templates: list[tuple[str, re.Pattern[str]]] | None = getattr(app.state, "templates", None)
    if templates is None:
        paths = app.openapi()["paths"]
        templates = app.state.templates = [(t, compile_path(t)[0]) for t in paths]
    return templates


def _template(app: FastAPI, tail: str, path: str) -> str:
    """The OpenAPI path template of the route whose own path is `tail`, matching `path`."""
    for template, pattern in _templates(app):
        if template.endswith(tail) and pattern.fullmatch(path):
            return template
    return path  # not described (none of ours): it then takes no parameter


def _taken(app: FastAPI, route: str, method: str) -> Taken:
    known: dict[tuple[str, str], Taken] | None = getattr(app.state, "query_parameters", None)
    if known is None:
        known = app.state.query_parameters = {}
    found = known.get((route, method))
    if found is None:
        operation = app.openapi()["paths"].get(route, {}).get(method.lower(), {})
        query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        found = known[route, method] = Taken(
            frozenset(p["name"] for p in query),
            frozenset(p["name"] for p in query if _is_list(p.get("schema", {}))),
        )
    return found


def _is_list(schema: dict[str, Any]) -> bool:
    """Whether a parameter's schema is an array (or may be one: `list[str] | None`)."""
    options = [schema, *schema.get("anyOf", [])]
    return any(option.get("type") == "array" for option in options)
