"""Free ports for the servers the stack starts.

A port from `bind(("127.0.0.1", 0))` is free when it is handed out, but it comes from the
kernel's ephemeral range, the same range every outgoing connection (to S3, Redis, the
API...) takes its local port from: on a busy machine one of them can take it before the
server meant to listen there binds it ("address already in use"). Ports here come from
below that range instead, which connections never use, handed out in turn through a
counter that every process on the machine shares (under a file lock), so two stacks
starting at once never pick the same one.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import tempfile
from pathlib import Path

LOWEST = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
COUNTER = Path(tempfile.gettempdir()) / "lakehouse-next-port"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, and that no other caller of this
    function on the machine got recently."""
    ports = range(LOWEST, _ephemeral_start())
    if len(ports) < 1000:  # an unusual kernel setting: take the kernel's pick
        return _kernel_pick()
    try:
        with COUNTER.open("a+") as counter:
            fcntl.flock(counter, fcntl.LOCK_EX)
            counter.seek(0)
            last = counter.read().strip()
            port = int(last) if last.isdigit() and int(last) in ports else ports.start
            for _ in range(len(ports)):
                port = ports.start + (port + 1 - ports.start) % len(ports)
                if _bindable(port):
                    counter.seek(0)
                    counter.truncate()
                    counter.write(str(port))
                    return port
    except OSError:  # the counter belongs to another user, or /tmp is read-only
        pass
    return _kernel_pick()


def _ephemeral_start() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_pick() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
