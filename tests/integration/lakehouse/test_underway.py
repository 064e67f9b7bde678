"""An upload in parts is announced as under way from its first part until it is committed
or refused (`lakehouse.ingest.underway`), so that the run asked for meanwhile waits for it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from lakehouse.ingest import landing as landing_module
from lakehouse.ingest import underway
from lakehouse.ingest.landing import Landing
from lakehouse.ingest.log import read_receipt
from lakehouse.store import ObjectStore, StoreUnavailable
from lakehouse.store.layout import landing_key, uploading_key, uploading_prefix

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024
BODY = b"n,text\n" + b"".join(b"%d,row number %d\n" % (i, i) for i in range(400_000))


def send(landing: Landing, part: bytes, announce: bool = True) -> None:
    """A part as the API hands it over: numbered, taken in, sent."""
    number = landing.open_part()
    landing.take_part(part, announce)
    landing.upload_part(number, part)


def under_way(store: ObjectStore) -> list[str]:
    return list(store.list_keys(uploading_prefix("big")))


def test_an_upload_in_parts_is_under_way_from_its_first_part_until_committed(
    store: ObjectStore,
) -> None:
    told: list[str] = []
    landing = Landing(store, "big", on_under_way=told.append)
    send(landing, BODY[:PART])
    assert told == [landing.ingest_id]
    assert under_way(store) == [uploading_key("big", landing.ingest_id)]
    landed = landing.finish(BODY[PART:])
    assert under_way(store) == []
    assert read_receipt(store, landed.record.ingest_id).seq == 1


def test_an_upload_is_announced_with_the_first_part_taken_once_its_end_is_near(
    store: ObjectStore,
) -> None:
    """The API takes parts in unannounced while the rest of the body is far off (a slow
    client's upload would hold its run waiting), then announces with the part it takes once
    the rest is due soon; once only."""
    told: list[str] = []
    landing = Landing(store, "big", on_under_way=told.append)
    first, second = BODY[:PART], BODY[PART : 2 * PART]
    send(landing, first, announce=False)
    assert told == [] and under_way(store) == [] and not landing.announced
    send(landing, second, announce=True)
    assert told == [landing.ingest_id]
    assert under_way(store) == [uploading_key("big", landing.ingest_id)]
    landed = landing.finish(BODY[2 * PART :])
    assert told == [landing.ingest_id] and under_way(store) == []
    assert read_receipt(store, landed.record.ingest_id).seq == 1


def test_an_upload_refused_after_its_first_part_is_no_longer_under_way(
    store: ObjectStore,
) -> None:
    landing = Landing(store, "big", on_under_way=lambda _: None)
    send(landing, BODY[:PART])
    landing.abort()
    assert under_way(store) == []
    assert list(store.list_keys("landing/big/")) == []


@pytest.mark.parametrize("asked", [True, False], ids=["runs-pushed", "runs-not-pushed"])
def test_an_upload_in_one_part_or_without_pushed_runs_is_never_announced(
    store: ObjectStore, asked: bool
) -> None:
    told: list[str] = []
    landing = Landing(store, "big", on_under_way=told.append if asked else None)
    if not asked:
        send(landing, BODY[:PART])
        landing.finish(BODY[PART:])
    else:
        landing.finish(BODY[:1000])
    assert told == []
    assert list(store.list_keys("landing/big/")) == [landing_key("big", landing.ingest_id)]


@pytest.mark.parametrize("sent_before", [0, 1], ids=["first-part", "after-an-unannounced-part"])
def test_the_store_failing_at_the_announcement_refuses_the_upload_and_leaves_nothing(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, sent_before: int
) -> None:
    """At the first part, or at a later one when the parts before it were taken in and sent
    unannounced (their end was far off): the upload is refused and leaves no object, no
    part and no log entry behind."""
    told: list[str] = []
    landing = Landing(store, "big", on_under_way=told.append)
    for number in range(sent_before):
        part = BODY[number * PART : (number + 1) * PART]
        send(landing, part, announce=False)
    monkeypatch.setattr(landing_module, "announce", refuse("announce"))
    with pytest.raises(StoreUnavailable):
        landing.take_part(BODY[sent_before * PART : (sent_before + 1) * PART])
    landing.abort()  # as the API does on any failure
    assert told == []  # no run asked for
    assert list(store.list_keys("landing/big/")) == []
    assert list(store.list_keys("log/big/")) == []
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix="landing/big/")
    assert uploads.get("Uploads", []) == []


def test_the_store_failing_at_the_withdrawal_still_commits_and_runs_stop_waiting_in_time(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = Landing(store, "big", on_under_way=lambda _: None)
    send(landing, BODY[:PART])
    real_delete = store.delete
    monkeypatch.setattr(
        store,
        "delete",
        lambda keys: (
            refuse("delete")()
            if keys == [uploading_key("big", landing.ingest_id)]
            else real_delete(keys)
        ),
    )
    landed = landing.finish(BODY[PART:])
    assert read_receipt(store, landed.record.ingest_id).seq == 1  # acknowledged: committed
    assert under_way(store) == [uploading_key("big", landing.ingest_id)]
    # A run then waits for it only until it is MAX_WAIT_SECONDS old.
    later = time.time() + underway.MAX_WAIT_SECONDS
    assert underway.await_uploads(store, "big", print, clock=lambda: later) == 0


def refuse(step: str) -> Callable[..., None]:
    def fail(*_: object) -> None:
        raise StoreUnavailable(f"object store unreachable (injected at {step})")

    return fail
