"""The process's upload slots: at most `max_concurrent_uploads` uploads land at once, and
each token's share: `token_uploads_at_once` leases and its bytes per hour (api/quotas.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, status

from api import metrics
from api.auth import PrincipalDep
from api.deps import SettingsDep
from api.quotas import AdmittedDep, Lease, quotas

RETRY_AFTER_SECONDS = 2


def upload_slots(app: FastAPI) -> UploadSlots:
    """The app's slots (made with the app: each API process has its own)."""
    slots: UploadSlots = app.state.upload_slots
    return slots


class UploadSlots:
    """The process's upload slots: they bound uploads whose bytes are landing."""

    def __init__(self) -> None:
        self.in_flight = 0

    def take(self, most: int, lease: Lease, allowance: Callable[[int], None]) -> UploadSlot:
        """A slot, or 503 + Retry-After when `most` are taken."""
        if self.in_flight >= most:
            metrics.REFUSED.labels("upload_slots").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"{self.in_flight} uploads already in flight, the most this server "
                f"takes at once: retry after {RETRY_AFTER_SECONDS} s",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.in_flight += 1
        metrics.UPLOADS_LANDING.inc()
        return UploadSlot(self, lease, allowance)


class UploadSlot:
    """One of the process's upload slots, with its token's lease: the handler gives both
    back as soon as the bytes have landed (before waiting for the run). `count_bytes`
    charges the bytes as they arrive to the token's hourly allowance (429 past it)."""

    def __init__(self, slots: UploadSlots, lease: Lease, allowance: Callable[[int], None]) -> None:
        self._slots = slots
        self._lease = lease
        self.count_bytes = allowance
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.in_flight -= 1
            metrics.UPLOADS_LANDING.dec()
            self._lease.release()


async def upload_slot(
    request: Request, settings: SettingsDep, principal: PrincipalDep, lease: AdmittedDep
) -> AsyncIterator[UploadSlot]:
    """One of the process's upload slots, with the token's upload lease (taken when the
    request was admitted, api/quotas.py); 503 + Retry-After when the process has all
    slots taken.

    The handler releases it as soon as the bytes have landed: a dependency's own exit
    comes only once the whole request is done, so it is just the backstop (errors).
    """
    slot = upload_slots(request.app).take(
        settings.max_concurrent_uploads,
        lease,
        lambda size: quotas(settings).upload_bytes(principal.name, size),
    )
    try:
        yield slot
    finally:
        slot.release()


UploadSlotDep = Annotated[UploadSlot, Depends(upload_slot)]
