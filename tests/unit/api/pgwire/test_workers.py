"""Cancel requests find the worker that holds the connection, whichever accepted them."""

from __future__ import annotations

from api.pgwire.workers import FIRST_PID, PID_SPAN, Worker, inboxes


def test_a_cancel_for_another_workers_connection_reaches_it() -> None:
    boxes = inboxes(3)
    first, third = Worker(0, boxes), Worker(2, boxes)
    assert (first.first_pid, third.first_pid) == (FIRST_PID, FIRST_PID + 2 * PID_SPAN)
    first.forward(third.first_pid + 7, -12345)
    assert third.received() == (third.first_pid + 7, -12345)
    first.forward(first.first_pid + 1, 1)  # its own: never sent
    first.forward(FIRST_PID + 9 * PID_SPAN, 1)  # no such worker: dropped
    for _, reader in boxes:
        try:
            reader.recv(8)
            raise AssertionError("a cancel went where it does not belong")
        except BlockingIOError:
            pass


def test_the_listening_socket_says_it_is_tcp() -> None:
    """asyncio turns Nagle's algorithm off only on sockets whose protocol is TCP: a socket
    made with proto 0 had every answer wait ~40 ms for the client's delayed ACK."""
    import socket

    from api.pgwire.server import listen

    listener = listen("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
    finally:
        listener.close()
