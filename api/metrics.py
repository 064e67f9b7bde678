"""Numbers an operator can watch: `GET /metrics`, in Prometheus's text format.

Counted as they happen, in every API process: requests by route, method and status, their
latency, bytes uploaded, refusals (a slot taken, a token's limit), query processes alive
and killed. Read from the store and the catalog at scrape time (at most once every
`SCRAPE_CACHE_SECONDS` per process): the ingests pending per dataset, the age of the oldest,
how long the newest applied ingest took from its commit to its version (run lag), and
what retention has deleted (the cleanup job's running totals, `lakehouse.publish.pruning`).

With several uvicorn workers, set `PROMETHEUS_MULTIPROC_DIR` to an empty directory shared
by them (`lakehouse up` does): a scrape then sums every worker's counts, not one's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache

import dagster as dg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Scope

from api.query.views import catalog_views
from lakehouse.ingest.log import read_entry
from lakehouse.ingest.marks import datasets_with_log
from lakehouse.ingest.records import received_at_of
from lakehouse.store import ObjectStore, layout

SCRAPE_CACHE_SECONDS = 10
PENDING_COUNTED = 100_000  # past this many pending ingests of a dataset, "at least"

REQUESTS = Counter(
    "lakehouse_http_requests_total", "Requests answered.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "lakehouse_http_request_duration_seconds",
    "Time from a request's arrival to its answer's last byte.",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
UPLOAD_BYTES = Counter(
    "lakehouse_upload_bytes_total", "Bytes of CSV uploads received (after decompression)."
)
UPLOADS_LANDING = Gauge(
    "lakehouse_upload_slots_busy", "Uploads landing their bytes now.", multiprocess_mode="livesum"
)
REFUSED = Counter(
    "lakehouse_refused_total",
    "Requests refused for want of room: upload or query slots of a process (503), or a "
    "token's limits (429).",
    ["reason"],
)
LIMITS_STORE_ERRORS = Counter(
    "lakehouse_limits_store_errors_total",
    "Times the per-token limits' store could not be reached (the request went on unlimited).",
)
QUERY_PROCESSES = Gauge(
    "lakehouse_query_processes", "Query processes alive.", multiprocess_mode="livesum"
)
QUERY_PROCESSES_KILLED = Counter(
    "lakehouse_query_processes_killed_total",
    "Query processes killed: failed, grown too large, or past their time.",
)


def route_of(scope: Scope) -> str:
    """The route's template (`/v1/catalog/{name}`), never the path: bounded labels. A
    route knows its path within its router (`/catalog/{name}`): the prefixes are what the
    request's path has before it."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None:
        return "unmatched"
    try:
        tail = template.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return str(template)
    path = scope["path"]
    return path[: len(path) - len(tail)] + template if path.endswith(tail) else str(template)


def observe(scope: Scope, status: int, seconds: float) -> None:
    route, method = route_of(scope), scope["method"]
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route, method).observe(seconds)


class _Backlog(Collector):
    """The ingests pending per dataset, the age of the oldest, and the run lag: from the
    store and the catalog, remembered for `SCRAPE_CACHE_SECONDS`."""

    def __init__(self, store: ObjectStore, instance: dg.DagsterInstance) -> None:
        self.store, self.instance = store, instance
        self._lock = threading.Lock()
        self._at = 0.0
        self._families: list[GaugeMetricFamily | CounterMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            if time.monotonic() - self._at >= SCRAPE_CACHE_SECONDS:
                self._families = self._measure()
                self._at = time.monotonic()
            yield from self._families

    def _measure(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        pending = GaugeMetricFamily(
            "lakehouse_ingests_pending", "Ingests committed, not yet decided.", labels=["dataset"]
        )
        oldest = GaugeMetricFamily(
            "lakehouse_ingest_oldest_pending_age_seconds",
            "How long the oldest pending ingest has waited.",
            labels=["dataset"],
        )
        lag = GaugeMetricFamily(
            "lakehouse_run_lag_seconds",
            "The newest version's newest ingest: from its upload to its version.",
            labels=["dataset"],
        )
        manifests = catalog_views(self.instance, self.store.bucket).refresh().manifests
        now = datetime.now(UTC)
        for name in datasets_with_log(self.store):
            manifest = manifests.get(name)
            after = manifest.applied_through if manifest else 0
            keys = self.store.list_keys(layout.log_prefix(name), layout.log_key(name, after))
            first, count = None, 0
            for key in keys:
                first = first or key
                count += 1
                if count >= PENDING_COUNTED:
                    break
            pending.add_metric([name], count)
            if first is not None:
                entry = read_entry(self.store, name, layout.seq_of_log_key(first))
                oldest.add_metric([name], (now - entry.received_at).total_seconds())
            else:
                oldest.add_metric([name], 0)
            if manifest and manifest.added_ingest_ids:
                uploaded = received_at_of(manifest.added_ingest_ids[-1])
                lag.add_metric([name], (manifest.updated_at - uploaded).total_seconds())
        return [pending, oldest, lag, *self._retention()]

    def _retention(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        deleted = CounterMetricFamily(
            "lakehouse_retention_deleted",
            "What retention passes have deleted: settled ingests (each a log entry, receipt "
            "and landing file), duplicate marks, commit records, runs.",
            labels=["kind"],
        )
        last = GaugeMetricFamily(
            "lakehouse_retention_last_pass_timestamp_seconds", "When the last pass ended."
        )
        totals = self.store.get_json_or_none(layout.RETENTION_TALLY) or {}
        for kind in ("ingests", "marks", "commit_records", "runs"):
            deleted.add_metric([kind], totals.get(kind, 0))
        last.add_metric([], totals.get("last_pass", 0))
        return [deleted, last]


@lru_cache
def _backlog(store: ObjectStore, instance: dg.DagsterInstance) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_Backlog(store, instance))
    return registry


def exposition(store: ObjectStore, instance: dg.DagsterInstance) -> tuple[bytes, str]:
    """The body and content type of a scrape: every process's counts, then the backlog."""
    counted = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    body = generate_latest(counted) + generate_latest(_backlog(store, instance))
    return body, CONTENT_TYPE_LATEST
