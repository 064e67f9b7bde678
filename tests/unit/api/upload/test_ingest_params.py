"""The ingest route's small parts that need no server: `wait`, and the upload slot."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from api.quotas import Lease
from api.upload.params import wait_seconds
from api.upload.slots import (
    LEAST_RESERVED_BYTES,
    MIB,
    UploadSlots,
    largest_reservation,
    reservation,
)
from lakehouse.settings import Settings


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [(None, 0.0), ("", 0.0), ("false", 0.0), ("0", 0.0), ("true", 300.0), ("TRUE", 300.0)]
    + [("2.5", 2.5), ("300", 300.0)],
)
def test_wait_is_true_false_or_seconds_up_to_the_limit(wait: str | None, seconds: float) -> None:
    assert wait_seconds(wait, 300.0) == seconds


@pytest.mark.parametrize("wait", ["nan", "NaN", "inf", "-inf", "1e9", "300.5", "-1", "soon"])
def test_other_waits_are_422_saying_what_to_send(wait: str) -> None:
    with pytest.raises(HTTPException) as refused:
        wait_seconds(wait, 300.0)
    assert refused.value.status_code == 422
    assert refused.value.detail == (
        f"wait={wait!r}: use wait=true (waits up to 300 s), wait=false, or a number of "
        "seconds from 0 to 300, e.g. wait=60"
    )


def test_an_upload_slot_is_given_back_once_however_often_released() -> None:
    slots = UploadSlots()
    leases_given_back = []
    slot = slots.take(MIB, MIB, Lease(lambda: leases_given_back.append(1)), lambda size: None)
    assert (slots.in_flight, slots.reserved) == (1, MIB)
    slot.release()
    slot.release()  # the dependency's exit releases again after the handler did
    assert (slots.in_flight, slots.reserved) == (0, 0)
    assert leases_given_back == [1]  # the token's lease too, once


def request_with(**headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/v1/ingest", "headers": raw})


SETTINGS = Settings(ingest_part_bytes=8 * MIB, ingest_parts_in_flight=4)


@pytest.mark.parametrize(
    ("headers", "reserved"),
    [
        ({"content_length": "3000"}, LEAST_RESERVED_BYTES),  # a 100-row file
        ({"content_length": str(20 * MIB)}, 20 * MIB),
        ({"content_length": str(10**12)}, 48 * MIB),  # no more than the largest holds
        ({"content_length": "3000", "content_encoding": "identity"}, LEAST_RESERVED_BYTES),
        ({}, 48 * MIB),  # chunked: its length is unknown
        # Attack: a small length declared beside a chunked body of any length.
        ({"content_length": "3000", "transfer_encoding": "chunked"}, 48 * MIB),
        ({"content_length": "3000", "content_encoding": "gzip"}, 48 * MIB),  # may inflate
        ({"content_length": "3000", "content_type": "multipart/form-data; b=x"}, 48 * MIB),
    ],
)
def test_an_upload_counts_for_its_length_only_where_that_bounds_what_it_holds(
    headers: dict[str, str], reserved: int
) -> None:
    assert largest_reservation(SETTINGS) == 48 * MIB  # 4 parts in flight, one cut, the last
    assert reservation(request_with(**headers), SETTINGS) == reserved


def no_allowance(size: int) -> None:
    """A token without an hourly byte allowance."""


def test_attack_many_small_uploads_at_once_are_bounded_by_the_budget() -> None:
    """Attack: a flood of small uploads, each counting for little, to hold the process's
    memory: each counts for at least LEAST_RESERVED_BYTES, so the budget still bounds them."""
    slots = UploadSlots()
    budget = 4 * largest_reservation(SETTINGS)
    taken = []
    with pytest.raises(HTTPException) as refused:
        while True:
            slot = slots.take(budget, LEAST_RESERVED_BYTES, Lease(lambda: None), no_allowance)
            taken.append(slot)
    assert len(taken) == budget // LEAST_RESERVED_BYTES == 192
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "2"}
    assert refused.value.detail == (
        "192 uploads already in flight hold 192 of the 192 MiB this server buffers for "
        "uploads at once: retry after 2 s"
    )
