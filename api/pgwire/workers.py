"""The endpoint's worker processes: one listening socket, `pg_workers` processes accepting
connections on it (each a pg_mimic server with `pg_max_concurrent` query processes of its
own, as uvicorn's workers are for the API: the protocol runs in Python, a core a worker).

A client cancels a query on a new connection, which any worker may accept: so each
worker's backend process ids name it (`FIRST_PID + index * PID_SPAN` on), and a cancel
for another worker's connection is passed to that worker over a datagram socket pair made
before the workers were forked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

FIRST_PID = 10_000
PID_SPAN = 1_000_000
_CANCEL = struct.Struct("!ii")  # backend pid, secret


@dataclass
class Worker:
    index: int
    # One (write end, read end) per worker; a worker reads its own, writes to others'.
    inboxes: list[tuple[socket.socket, socket.socket]]

    @property
    def first_pid(self) -> int:
        return FIRST_PID + self.index * PID_SPAN

    @property
    def inbox(self) -> socket.socket:
        return self.inboxes[self.index][1]

    def forward(self, pid: int, secret: int) -> None:
        """A cancel request for a connection of another worker: to that worker."""
        owner = (pid - FIRST_PID) // PID_SPAN
        if owner != self.index and 0 <= owner < len(self.inboxes):
            self.inboxes[owner][0].send(_CANCEL.pack(pid, secret))

    def received(self) -> tuple[int, int]:
        """A cancel request another worker passed on (its inbox is readable)."""
        pid, secret = _CANCEL.unpack(self.inbox.recv(_CANCEL.size))
        return pid, secret


def inboxes(count: int) -> list[tuple[socket.socket, socket.socket]]:
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(count)]
    for _, reader in pairs:
        reader.setblocking(False)
    return pairs


def run_workers(count: int, work: Callable[[Worker], None]) -> int:
    """`work` in `count` forked processes (in this one if count is 1); the exit status.
    SIGTERM or SIGINT stops them all; one that dies stops the others (the stack's
    supervisor then sees the endpoint gone)."""
    boxes = inboxes(count)
    if count == 1:
        work(Worker(0, boxes))
        return 0
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            try:
                work(Worker(index, boxes))
            except BaseException:
                log.exception("Postgres endpoint worker %d failed", index)
                status = 1
            finally:
                sys.stdout.flush()
                os._exit(status)
        children[pid] = index
    return _supervise(children)


def _supervise(children: dict[int, int]) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while children:
        pid, code = os.wait()
        index = children.pop(pid, None)
        if not stopping and index is not None:
            log.error("Postgres endpoint worker %d exited (%d): stopping the others", index, code)
            status = 1
            stop(signal.SIGTERM, None)
    return status


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        os.kill(pid, signum)
