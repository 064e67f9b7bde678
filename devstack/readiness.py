"""How the stack tells a process it started is ready: each check answers at once, True
or False, and never raises for a process that is merely not up yet."""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable

import httpx

from devstack.processes import Process
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore, StoreUnavailable


def s3_ready(settings: Settings) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            ObjectStore(settings.s3()).check()
        except StoreUnavailable:
            return False
        return True

    return ready


def broker_ready(settings: Settings) -> Callable[[], bool]:
    def ready() -> bool:
        import redis  # only where needed

        try:
            return bool(redis.Redis.from_url(settings.resolved_broker_url).ping())
        except redis.RedisError:
            return False

    return ready


def log_says(process: Process, text: str) -> Callable[[], bool]:
    return lambda: text in process.output()


def daemon_ready(settings: Settings) -> Callable[[], bool]:
    """The daemon has reported its sensor loop alive (the sensors drive every run)."""

    def ready() -> bool:
        from dagster import DagsterInstance  # heavy import, only where needed

        from lakehouse.runtime.compat import daemon_heartbeats

        with DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
            beats = daemon_heartbeats(instance)
        return "SENSOR" in beats

    return ready


def code_server_serving(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        from lakehouse.runtime.compat import code_server_serving  # imports grpc: only here

        return code_server_serving("127.0.0.1", port)

    return ready


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every poll: httpx makes one per request otherwise, loading the
    CA bundle each time (~75 ms of CPU; a stack's start polls ~40 times)."""
    return httpx.create_ssl_context()


def http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return httpx.get(url, timeout=2, verify=_tls()).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


def pg_ready(settings: Settings) -> Callable[[], bool]:
    """The Postgres endpoint accepts connections (on loopback when it listens on all)."""
    host = "127.0.0.1" if settings.pg_host in ("0.0.0.0", "::", "") else settings.pg_host
    return tcp_open(host, settings.pg_port)


def tcp_open(host: str, port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            return False

    return ready
