"""The API's log, one JSON object a line: every line written while a request is handled
carries that request's id (`request_id`, also its `X-Request-ID`, its audit record's and
its ingest's receipt's), and every request ends with one access line."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
ACCESS = logging.getLogger("lakehouse.access")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure() -> None:
    """JSON lines on stderr for this process's own loggers (uvicorn keeps its own)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonLines) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def access(fields: dict[str, Any]) -> None:
    """The request's access line: method, path, status, milliseconds, token, bytes."""
    ACCESS.info(
        "%s %s %s", fields.get("method"), fields.get("path"), fields.get("status"),
        extra={"fields": fields},
    )  # fmt: skip
