"""The Postgres endpoint's process: `python -m api.pgwire` (started by `lakehouse up` beside
the API), listening on `pg_host:pg_port` with `pg_workers` worker processes (`workers`).

The wire protocol is pg_mimic's (from PyPI: startup, auth, the simple and extended query
protocols, cancel requests); the password is an API token, checked against the same token
store as `/v1/*` (any user name). Sessions are `api.pgwire.session`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pg_mimic
from pg_mimic import messages
from pg_mimic.auth import IdentityProvider
from pg_mimic.stream import PgStream

from api import logs
from api.audit import AuditLog
from api.auth import token_cache
from api.deps import store_of
from api.pgwire import compat
from api.pgwire.context import Context, QuerySlots
from api.pgwire.session import LakehouseSession
from api.pgwire.settings import startup as startup_settings
from api.pgwire.workers import Worker, run_workers
from api.query.engine import QueryEngine
from api.quotas import quotas
from lakehouse.settings import Settings, get_settings

log = logging.getLogger(__name__)

SERVER_VERSION = "16.0 (lakehouse)"


class TokenAuth(pg_mimic.AuthPlugin):
    """The password is an API token: a live one names the session's principal; anything
    else is refused as Postgres refuses a bad password (28P01)."""

    def __init__(self, context: Context) -> None:
        self.context = context

    async def authenticate(
        self, stream: PgStream, username: str, identity_provider: IdentityProvider
    ) -> bool:
        stream.write(messages.make_authentication_cleartext_password())
        await stream.drain()
        tag, payload = await stream.read_message()
        if tag != messages.PASSWORD:
            return False
        secret = payload.rstrip(b"\x00").decode("utf-8", "replace")
        cache = token_cache(self.context.settings)
        lookup = cache.cached(secret)
        if lookup is None:
            lookup = await asyncio.to_thread(cache.lookup, secret)
        token = lookup.token
        if token is None or token.expired(time.time()):
            log.info("refused a Postgres connection as %r: %s", username, lookup.refusal)
            return False
        self.context.principals[stream] = token.principal()
        return True


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.pg_tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.pg_tls_cert_file, settings.pg_tls_key_file)
    return context


def build(settings: Settings, worker: Worker) -> tuple[compat.TlsServer, Context]:
    compat.install()
    instance = dg.DagsterInstance.from_config(str(settings.resolved_dagster_home))
    context = Context(
        settings=settings,
        engine=QueryEngine(settings, instance, settings.pg_max_concurrent),
        audit=AuditLog(
            store_of(settings), settings.audit_flush_seconds, settings.audit_batch_records
        ),
        quotas=quotas(settings),
        slots=QuerySlots(settings, settings.pg_max_concurrent),
    )
    server = compat.TlsServer(
        session_factory=lambda: LakehouseSession(context),
        auth_plugin_factory=lambda username: TokenAuth(context),
        server_version=SERVER_VERSION,
        tls=tls_context(settings),
        first_pid=worker.first_pid,
        elsewhere=worker.forward,
        check_startup=startup_settings,
    )
    return server, context


async def serve(settings: Settings, listener: socket.socket, worker: Worker) -> None:
    # Threads wait on query processes (at most pg_max_concurrent at once, see QuerySlots),
    # token lookups and catalog queries: never so many that a query cannot finish.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(4 * settings.pg_max_concurrent + 16, "pgwire"))
    server, context = build(settings, worker)
    await server.start_server(sock=listener)
    loop.add_reader(worker.inbox.fileno(), lambda: server.cancel(*worker.received()))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(server.serve_forever())
    await stop.wait()
    server.close()
    serving.cancel()
    await asyncio.to_thread(context.engine.close)
    await asyncio.to_thread(context.audit.close)


def listen(host: str, port: int) -> socket.socket:
    """The endpoint's socket, made before its workers fork (each accepts on it). Its
    protocol is named (IPPROTO_TCP), not left 0: asyncio disables Nagle's algorithm only
    on sockets that say they are TCP, and without that each answer waits ~40 ms for the
    client's delayed ACK."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)
    listener.listen(256)
    listener.setblocking(False)
    return listener


def main() -> None:
    logs.configure()
    settings = get_settings()
    settings.refuse_example_secrets()
    if not settings.pg_port:
        raise SystemExit("LAKEHOUSE_PG_PORT is 0: the Postgres endpoint is not to run")
    listener = listen(settings.pg_host, settings.pg_port)
    log.info(
        "the Postgres endpoint listens on %s:%d with %d workers (%s)",
        settings.pg_host,
        settings.pg_port,
        settings.pg_workers,
        "TLS only" if settings.pg_tls_cert_file else "no TLS: loopback only",
    )
    status = run_workers(
        settings.pg_workers, lambda worker: asyncio.run(serve(settings, listener, worker))
    )
    raise SystemExit(status)
