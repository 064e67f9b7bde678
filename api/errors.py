"""The product's errors (`lakehouse.errors`) as HTTP answers, mapped once for every route:
a status by kind, the error's own `detail` (what was wrong and what to do), and
`Retry-After` where trying again later may work (`WWW-Authenticate` on a 401)."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from api.query.engine import QueryTimeout
from api.upload.streams import SlowUpload, TooLarge, UnknownEncoding
from lakehouse.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    LakehouseError,
    NotFound,
    Throttled,
    Unauthenticated,
    Unavailable,
)
from lakehouse.names import InvalidName
from lakehouse.store.layout import InvalidIngestId

# The most specific class a raised error is an instance of decides (FastAPI walks its MRO).
STATUS: dict[type[LakehouseError], int] = {
    InvalidInput: status.HTTP_400_BAD_REQUEST,
    InvalidName: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidIngestId: status.HTTP_422_UNPROCESSABLE_CONTENT,
    TooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
    SlowUpload: status.HTTP_408_REQUEST_TIMEOUT,
    UnknownEncoding: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    Unauthenticated: status.HTTP_401_UNAUTHORIZED,
    Forbidden: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Gone: status.HTTP_410_GONE,
    Conflict: status.HTTP_409_CONFLICT,
    Throttled: status.HTTP_429_TOO_MANY_REQUESTS,
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    QueryTimeout: status.HTTP_504_GATEWAY_TIMEOUT,
}


def register(app: FastAPI) -> None:
    for kind in STATUS:
        app.add_exception_handler(kind, _answer)


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LakehouseError)
    code = next(STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"detail": exc.detail()}, status_code=code, headers=headers)
