"""What every session of the Postgres endpoint shares: settings, the query engine (its
pool of query processes is the endpoint's admission control), the audit trail, per-token
limits, and the principal each connection authenticated as."""

from __future__ import annotations

from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from pg_mimic.stream import PgStream

from api.audit import AuditLog
from api.query.engine import QueryEngine
from api.quotas import Quotas
from lakehouse.auth.grants import Principal
from lakehouse.settings import Settings


@dataclass
class Context:
    settings: Settings
    engine: QueryEngine
    audit: AuditLog
    quotas: Quotas
    # Set by the auth plugin, taken by the session (pg_mimic makes the session before it
    # authenticates, and hands both the connection's stream).
    principals: WeakKeyDictionary[PgStream, Principal] = field(default_factory=WeakKeyDictionary)
