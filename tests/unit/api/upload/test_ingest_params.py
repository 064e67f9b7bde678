"""The ingest route's small parts that need no server: `wait`, and the upload slot."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from api.quotas import Lease
from api.upload.params import wait_seconds
from api.upload.slots import UploadSlots


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
    slot = slots.take(1, Lease(lambda: leases_given_back.append(1)), lambda size: None)
    assert slots.in_flight == 1
    slot.release()
    slot.release()  # the dependency's exit releases again after the handler did
    assert slots.in_flight == 0
    assert leases_given_back == [1]  # the token's lease too, once
