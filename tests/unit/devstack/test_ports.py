"""Ports for the stack's servers: free, below the range outgoing connections take their
local ports from, and never the same one twice in a row across processes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack import ports


@pytest.fixture(autouse=True)
def own_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    counter = tmp_path / "next-port"
    monkeypatch.setattr(ports, "COUNTER", counter)
    return counter


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    handed = [ports.free_port() for _ in range(50)]
    assert len(set(handed)) == 50
    assert all(ports.LOWEST <= port < ports._ephemeral_start() for port in handed)
    for port in handed:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if something took it


def test_a_port_in_use_is_skipped(own_counter: Path) -> None:
    first = ports.free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first + 1))
        busy.listen()
        # The next one past it (ports a test just used may still be in TIME_WAIT: skipped too).
        assert ports.free_port() > first + 1


def test_the_counter_is_shared_through_its_file(own_counter: Path) -> None:
    first = ports.free_port()
    assert own_counter.read_text() == str(first)
    own_counter.write_text(str(first + 10))  # as another process would have left it
    assert ports.free_port() == first + 11


def test_without_a_usable_counter_the_kernel_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ports, "COUNTER", tmp_path / "missing-dir" / "next-port")
    port = ports.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
