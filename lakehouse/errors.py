"""The product's errors: one root, eight kinds, each mapped to HTTP once (`api/errors.py`).

Everything the core raises for a reason a caller can act on is one of these; the edge (the
API, the CLI, the Dagster asset) maps the kind, never inspects a library's exception.
"""

from __future__ import annotations


class LakehouseError(Exception):
    """The root: something the caller can be told, in words that say what to do."""

    retry_after: int | None = None  # seconds after which trying again may work

    def detail(self) -> object:
        """What the caller is told: the message, or a structure around it."""
        return str(self)


class NotFound(LakehouseError, LookupError):
    """What was asked for does not exist (an object, a receipt, a dataset, a version)."""


class Gone(NotFound):
    """It existed, and retention has pruned it: `facts` say what is still known."""

    def __init__(self, message: str, **facts: object) -> None:
        super().__init__(message)
        self.facts = facts

    def detail(self) -> object:
        return {"message": str(self), **self.facts}


class Conflict(LakehouseError):
    """The request contradicts the current state (a schema, a version, a key)."""


class Unavailable(LakehouseError):
    """A service the request needs is down or refusing us; retrying later may work."""

    retry_after = 10


class InvalidInput(LakehouseError, ValueError):
    """The request itself is wrong (a name, a parameter, a file): fix it and send again."""


class Unauthenticated(LakehouseError):
    """No credentials, or ones that name nobody (unknown, expired, revoked)."""


class Throttled(LakehouseError):
    """The caller is past one of its limits (requests, bytes, work at once): retry after
    `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class Forbidden(LakehouseError):
    """The caller is known but lacks the privilege or the grant the request needs."""
