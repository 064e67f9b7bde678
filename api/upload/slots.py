"""The process's upload slots: the uploads landing at once hold at most the buffers of
`max_concurrent_uploads` large ones, and each token's share: `token_uploads_at_once` leases
and its bytes per hour (api/quotas.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, status

from api import metrics
from api.auth import PrincipalDep
from api.deps import SettingsDep
from api.quotas import AdmittedDep, Lease, quotas
from api.upload.body import plain_length
from lakehouse.settings import Settings
from lakehouse.settings_limits import MIB

RETRY_AFTER_SECONDS = 2
# What a small upload counts for at least: a burst of 100-row files is not refused, yet
# their number stays bounded (each also holds a connection and its request's objects).
LEAST_RESERVED_BYTES = MIB


def upload_slots(app: FastAPI) -> UploadSlots:
    """The app's slots (made with the app: each API process has its own)."""
    slots: UploadSlots = app.state.upload_slots
    return slots


def largest_reservation(settings: Settings) -> int:
    """The most one upload holds while it lands: its parts in flight, the part being cut
    and the last part."""
    return settings.ingest_part_bytes * (settings.ingest_parts_in_flight + 2)


def reservation(request: Request, settings: Settings) -> int:
    """What an upload counts for: its length, where the request says it exactly (a plain
    body; at least LEAST_RESERVED_BYTES), else what the largest upload holds (a chunked
    body, a gzip that may inflate, a multipart form)."""
    largest = largest_reservation(settings)
    length = plain_length(request)
    if length is None:
        return largest
    return min(max(length, LEAST_RESERVED_BYTES), largest)


class UploadSlots:
    """The process's upload slots: they bound the bytes the uploads landing at once may hold
    (`budget`), each upload counted for its `reservation`."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.reserved = 0

    def take(
        self, budget: int, size: int, lease: Lease, allowance: Callable[[int], None]
    ) -> UploadSlot:
        """A slot of `size` bytes, or 503 + Retry-After when the budget has no room."""
        if self.reserved + size > budget:
            metrics.REFUSED.labels("upload_slots").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"{self.in_flight} uploads already in flight hold "
                f"{self.reserved / MIB:.0f} of the {budget / MIB:.0f} MiB this server buffers "
                f"for uploads at once: retry after {RETRY_AFTER_SECONDS} s",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.in_flight += 1
        self.reserved += size
        metrics.UPLOADS_LANDING.inc()
        return UploadSlot(self, size, lease, allowance)


class UploadSlot:
    """One of the process's upload slots, with its token's lease: the handler gives both
    back as soon as the bytes have landed (before waiting for the run). `count_bytes`
    charges the bytes as they arrive to the token's hourly allowance (429 past it)."""

    def __init__(
        self, slots: UploadSlots, size: int, lease: Lease, allowance: Callable[[int], None]
    ) -> None:
        self._slots = slots
        self._size = size
        self._lease = lease
        self.count_bytes = allowance
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.in_flight -= 1
            self._slots.reserved -= self._size
            metrics.UPLOADS_LANDING.dec()
            self._lease.release()


async def upload_slot(
    request: Request, settings: SettingsDep, principal: PrincipalDep, lease: AdmittedDep
) -> AsyncIterator[UploadSlot]:
    """One of the process's upload slots, with the token's upload lease (taken when the
    request was admitted, api/quotas.py); 503 + Retry-After when the uploads landing
    already hold the process's budget.

    The handler releases it as soon as the bytes have landed: a dependency's own exit
    comes only once the whole request is done, so it is just the backstop (errors).
    """
    slot = upload_slots(request.app).take(
        settings.max_concurrent_uploads * largest_reservation(settings),
        reservation(request, settings),
        lease,
        lambda size: quotas(settings).upload_bytes(principal.name, size),
    )
    try:
        yield slot
    finally:
        slot.release()


UploadSlotDep = Annotated[UploadSlot, Depends(upload_slot)]
