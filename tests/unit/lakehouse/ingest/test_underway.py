"""A run waits for its dataset's uploads under way, and never longer than it should."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from lakehouse.ingest.underway import MAX_WAIT_SECONDS, POLL_SECONDS, await_uploads
from lakehouse.store import ObjectStore
from lakehouse.store.layout import uploading_key

ID = "20261206T120000000000-0123abcd"


class Announcements:
    """The store's listing of announcements, on a clock that moves only when a run sleeps."""

    def __init__(self, age: float | None, withdrawn_after_polls: int | None) -> None:
        self.now = 1_000_000.0
        self.age = age  # None: rewritten all the time (a stream of uploads)
        self.withdrawn_after = withdrawn_after_polls
        self.polls = 0

    def list_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        assert prefix == "landing/big/uploading/"
        if self.withdrawn_after is None or self.polls < self.withdrawn_after:
            written_at = self.now - self.age if self.age is not None else self.now
            yield uploading_key("big", ID), datetime.fromtimestamp(written_at, UTC)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.polls += 1
        self.now += seconds


def wait(announcements: Announcements) -> tuple[float, list[str]]:
    said: list[str] = []
    store: ObjectStore = announcements  # type: ignore[assignment]
    waited = await_uploads(store, "big", said.append, announcements.clock, announcements.sleep)
    return waited, said


def test_a_run_waits_while_an_upload_is_under_way_and_says_so_once() -> None:
    announcements = Announcements(age=1, withdrawn_after_polls=3)
    waited, said = wait(announcements)
    assert waited == pytest.approx(3 * POLL_SECONDS)
    assert said == ["big: waiting for 1 upload(s) under way to be committed"]


def test_an_announcement_left_by_an_api_that_died_is_not_waited_for() -> None:
    announcements = Announcements(age=MAX_WAIT_SECONDS, withdrawn_after_polls=None)
    assert wait(announcements) == (0, [])


def test_a_run_waits_at_most_the_bound_however_long_an_upload_takes() -> None:
    announcements = Announcements(age=None, withdrawn_after_polls=None)
    waited, _ = wait(announcements)
    assert MAX_WAIT_SECONDS <= waited < MAX_WAIT_SECONDS + 2 * POLL_SECONDS
