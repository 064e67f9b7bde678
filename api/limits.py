"""Caps a request must fit before any handler reads it: its headers (431), and the body of
every route but the upload (413, before a byte of it is parsed). The upload streams its
body under caps of its own (size, and a read timeout: api/upload/body.py). Once the answer
is sent, the token's lease the request held (api/quotas.py) is given back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import app_settings
from api.quotas import Lease
from lakehouse.settings import Settings

STREAMED = ("/v1/ingest",)  # bodies capped as they stream, not here
log = logging.getLogger(__name__)


class RequestCaps:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = app_settings(scope["app"])
        if refusal := _headers_refusal(scope, settings):
            await refusal(scope, receive, send)
            return
        try:
            await self._within_caps(scope, receive, send, settings)
        except ClientStalled:
            pass  # logged; the server closes a connection whose answer did not finish
        finally:  # after the last byte of the answer, or the client left
            lease: Lease | None = scope.get("state", {}).get("lease")
            if lease is not None:
                lease.release()

    async def _within_caps(
        self, scope: Scope, receive: Receive, send: Send, settings: Settings
    ) -> None:
        if scope["path"] in STREAMED:
            await self.app(scope, receive, send)
            return
        body = await _body_within(scope, receive, settings.max_json_body_bytes)
        if body is None:
            await _too_large(settings.max_json_body_bytes)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _headers_refusal(scope: Scope, settings: Settings) -> JSONResponse | None:
    headers = scope["headers"]
    size = sum(len(name) + len(value) for name, value in headers)
    if len(headers) <= settings.max_request_headers and size <= settings.max_header_bytes:
        return None
    return JSONResponse(
        {
            "detail": f"the request has {len(headers)} headers of {size:,} bytes; at most "
            f"{settings.max_request_headers} headers of {settings.max_header_bytes:,} bytes "
            "are read (LAKEHOUSE_MAX_REQUEST_HEADERS, LAKEHOUSE_MAX_HEADER_BYTES): send fewer"
        },
        status_code=431,
    )


async def _body_within(scope: Scope, receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None as soon as it is past `cap`: a declared length past it is
    refused unread; a body without one is read only up to it."""
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > cap:
        return None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)  # the client left: the app sees an empty body and its exit
        body += message.get("body", b"")
        if len(body) > cap:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _too_large(cap: int) -> JSONResponse:
    return JSONResponse(
        {
            "detail": f"the request body is larger than {cap:,} bytes: send a shorter one "
            "(LAKEHOUSE_MAX_JSON_BODY_BYTES); files go to POST /v1/ingest"
        },
        status_code=413,
    )


class ClientStalled(Exception):
    """The client read none of a streamed answer for the send timeout."""


class TimedStream(StreamingResponse):
    """A streamed answer that ends when its client stops reading: a send that waits past
    `send_timeout` (the client's socket full) calls `on_stall` (which stops the query and
    frees its slot) and aborts the answer, closing the connection."""

    def __init__(
        self, content: Any, *, send_timeout: float, on_stall: Callable[[], None], **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self.send_timeout, self.on_stall = send_timeout, on_stall

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def timed(message: Message) -> None:
            try:
                await asyncio.wait_for(send(message), self.send_timeout)
            except TimeoutError:
                log.warning("the client read nothing for %g s: answer ended", self.send_timeout)
                self.on_stall()
                raise ClientStalled(f"no byte read for {self.send_timeout:g} s") from None

        await super().__call__(scope, receive, timed)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app: the body already read, then what the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
