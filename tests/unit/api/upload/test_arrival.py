"""A large upload's run is asked for as the rest of its body comes due
(`api.upload.body.Arrival`): once the rate so far says the rest of its declared length
arrives within the lead; never before its end when that cannot be foreseen."""

from __future__ import annotations

from api.upload.body import EARLY_RUN_LEAD_SECONDS, Arrival

MIB = 1024 * 1024


def test_a_body_of_unknown_length_is_never_due() -> None:
    """A chunked body's run is asked for at its commit: one asked for at its first part
    would hold a run worker idle for as long as a slow client takes (up to a minute)."""
    arrival = Arrival(declared=None, received=8 * MIB, started=0.0)
    assert not arrival.due_within(EARLY_RUN_LEAD_SECONDS, now=0.001)
    arrival.received = 1024 * MIB
    assert not arrival.due_within(EARLY_RUN_LEAD_SECONDS, now=3600.0)


def test_a_fast_upload_is_due_from_its_first_part() -> None:
    """71 MB at ~90 MB/s: the first 8 MiB took 0.09 s, the rest takes ~0.7 s; one part later
    the rest is due within the lead."""
    arrival = Arrival(declared=71 * MIB, received=8 * MIB, started=0.0)
    assert not arrival.due_within(0.5, now=0.09)
    arrival.received = 40 * MIB
    assert arrival.due_within(0.5, now=0.45)


def test_a_slow_upload_is_not_due_until_its_last_bytes_approach() -> None:
    """1 GiB at 10 MiB/s: its run is not asked for, holding a run worker idle, at its
    first part, nor halfway; only in its last half second."""
    arrival = Arrival(declared=1024 * MIB, received=8 * MIB, started=0.0)
    assert not arrival.due_within(0.5, now=0.8)
    arrival.received = 512 * MIB
    assert not arrival.due_within(0.5, now=51.2)
    arrival.received = 1020 * MIB
    assert arrival.due_within(0.5, now=102.0)


def test_a_body_longer_than_declared_is_due() -> None:
    arrival = Arrival(declared=10, received=20, started=0.0)
    assert arrival.due_within(0.0, now=5.0)
